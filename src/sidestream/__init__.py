"""sidestream: real-time beside a stateless Python API.

One module per concept; imports point one way, from the wire format and the errors at the
bottom, through the bus and the hub, up to the routes and the framework integrations:

- [`sidestream.errors`][sidestream.errors]: the typed exceptions.
- [`sidestream.sse`][sidestream.sse]: the event-stream wire format (no dependencies).
- [`sidestream.cursor`][sidestream.cursor]: channel names, stream ids and multi-channel cursors.
- [`sidestream.access`][sidestream.access]: the authorizer contract (who may read what).
- [`sidestream.tokens`][sidestream.tokens]: short-lived stream tokens (Mercure-shaped claims).
- [`sidestream.bus`][sidestream.bus]: publish to Redis Streams + pub/sub, read history, wait.
- [`sidestream.longpoll`][sidestream.longpoll]: long polling for any WSGI view.
- [`sidestream.subscriber`][sidestream.subscriber]: one client's queue and renderers.
- [`sidestream.listener`][sidestream.listener]: the Redis pub/sub session behind a hub.
- [`sidestream.replay`][sidestream.replay]: what a joining or reconnected stream missed.
- [`sidestream.hub`][sidestream.hub]: per-process fan-out over one Redis subscription (the
  channel registry and the subscriber policy).
- [`sidestream.admission`][sidestream.admission]: the one admission path of every stream route.
- [`sidestream.servers`][sidestream.servers]: the server adapters (uvicorn fast path, generic).
- [`sidestream.settings`][sidestream.settings]: the service's options as one checked value.
- [`sidestream.websocket`][sidestream.websocket]: the `/ws` route.
- [`sidestream.service`][sidestream.service]: the Falcon ASGI stream service.
- [`sidestream.flask`][sidestream.flask]: the Flask extension wiring bus, tokens and long polling.
- [`sidestream.mercure`][sidestream.mercure]: publishing to a Mercure hub.
- [`sidestream.testing`][sidestream.testing]: helpers for testing real-time endpoints.
"""

__version__ = "0.1.0"
