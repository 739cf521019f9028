"""sidestream: real-time beside a stateless Python API.

One module per concept; imports point one way, from the wire format up to the service:

- [`sidestream.sse`][sidestream.sse]: the event-stream wire format (no dependencies).
- [`sidestream.bus`][sidestream.bus]: publish to Redis Streams + pub/sub, read history, wait.
- [`sidestream.longpoll`][sidestream.longpoll]: long polling for any WSGI view.
- [`sidestream.access`][sidestream.access]: the authorizer contract (who may read what).
- [`sidestream.tokens`][sidestream.tokens]: short-lived stream tokens (Mercure-shaped claims).
- [`sidestream.hub`][sidestream.hub]: per-process fan-out over one Redis subscription.
- [`sidestream.service`][sidestream.service]: the Falcon ASGI stream service.
- [`sidestream.flask`][sidestream.flask]: the Flask extension wiring bus, tokens and long polling.
- [`sidestream.mercure`][sidestream.mercure]: publishing to a Mercure hub.
- [`sidestream.testing`][sidestream.testing]: helpers for testing real-time endpoints.
- [`sidestream.errors`][sidestream.errors]: the typed exceptions.
"""

__version__ = "0.1.0"
