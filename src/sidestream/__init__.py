"""sidestream: real-time beside a stateless Python API.

One module per concept:

- [`sidestream.sse`][sidestream.sse]: the event-stream wire format (no dependencies).
"""

__version__ = "0.1.0"
