"""What a client sees when Redis has lost the history it was reading.

REDIS_URL=memory:// python after_restart.py
"""

# --8<-- [start:imports]
import time

from sidestream.bus import Bus, connect
from sidestream.errors import HistoryGap

# --8<-- [end:imports]


def main(bus: Bus) -> None:
    cursor = bus.publish("orders", "order 1")  # the client saw this one, then went away
    # What a restart without persistence does
    bus.redis.delete(bus.stream_key("orders"))
    # (a restart takes longer than the millisecond stream ids count in)
    time.sleep(0.01)
    bus.publish("orders", "order 2")  # the first event after the restart

    # --8<-- [start:resume]
    try:
        missed = bus.history("orders", after_id=cursor)
    except HistoryGap as gap:
        print("gap: the events after our cursor are gone, so reload the state")
        # The reloaded state includes everything up to here
        missed, cursor = (
            [],
            gap.latest_id,
        )
    # --8<-- [end:resume]
    print("missed:", missed)
    bus.publish("orders", "order 3")
    print("next:  ", [event.data for event in bus.history("orders", after_id=cursor)])


if __name__ == "__main__":
    main(Bus(connect()))
