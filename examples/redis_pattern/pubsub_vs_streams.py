"""Pub/sub forgets, a stream remembers: a client is away while events are published.

REDIS_URL=memory:// python pubsub_vs_streams.py
"""

from redis.client import PubSub

from sidestream.bus import Bus, connect, decode_live


def subscribe(listener: PubSub, channel: str) -> None:
    listener.subscribe(channel)
    listener.get_message(timeout=1)  # Redis confirms; from now on messages arrive


def received(listener: PubSub) -> list[str]:
    """The data of the live messages that reached the connection (waits 0.2 s for
    more)."""
    found = []
    while (message := listener.get_message(timeout=0.2)) is not None:
        if message["type"] == "message":
            found.append(decode_live(message["data"]).data)
    return found


def main(bus: Bus) -> None:
    # --8<-- [start:pubsub]
    listener = bus.redis.pubsub()
    subscribe(listener, bus.live_channel("prices"))
    bus.publish_live("prices", "101")
    print("pub/sub, connected: ", received(listener))
    listener.unsubscribe()  # the client goes away (a deploy, a tunnel, a closed laptop)
    bus.publish_live("prices", "102")  # nobody is subscribed: Redis drops it
    subscribe(listener, bus.live_channel("prices"))
    bus.publish_live("prices", "103")
    print("pub/sub, came back: ", received(listener))
    listener.close()
    # --8<-- [end:pubsub]

    # --8<-- [start:streams]
    cursor = bus.publish("orders", "order 1")  # the last id the client saw
    bus.publish("orders", "order 2")  # published while the client is away...
    bus.publish("orders", "order 3")
    missed = bus.history("orders", after_id=cursor)  # ...and read back after the cursor
    print("stream, came back:  ", [event.data for event in missed])
    # --8<-- [end:streams]


if __name__ == "__main__":
    main(Bus(connect()))
