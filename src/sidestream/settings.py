"""The stream service's options as one typed, checked value.

[`create_app`][sidestream.service.create_app] takes its options as keyword arguments and turns
them into a [`ServiceSettings`][sidestream.settings.ServiceSettings] first: every check lives
here, once, and the app keeps the value (`app.settings`) instead of loose attributes. A value
that is out of range raises [`InvalidArgument`][sidestream.errors.InvalidArgument] naming it.

```python
from sidestream.errors import InvalidArgument
from sidestream.settings import ServiceSettings

settings = ServiceSettings(cors_origins=("https://app.example.com",), max_streams=2000)
print(settings.retry, settings.max_channels)
#> 3000 16
try:
    ServiceSettings(cors_origins=("*",))
except InvalidArgument as error:
    print(str(error)[:60])
    #> cors_origins must list exact origins like 'https://app.examp
```
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sidestream.errors import InvalidArgument

__all__ = ["ServiceSettings"]

_POSITIVE_INTS: Final = ("max_streams", "max_channels", "queue_size", "max_message_bytes")
_MILLISECONDS: Final = ("retry", "retry_jitter")
_SECONDS: Final = ("heartbeat", "publish_timeout")


@dataclass(frozen=True)
class ServiceSettings:
    """Every option of the stream service (see [`create_app`][sidestream.service.create_app]
    for what each one does), checked when the value is made.

    Raises:
        InvalidArgument: a number out of range, `*` in `cors_origins`, or a path that does not
            start with `/`.
    """

    cors_origins: tuple[str, ...] = ()
    cors_credentials: bool = True
    heartbeat: float = 15.0
    max_streams: int = 5000
    max_channels: int = 16
    queue_size: int = 256
    retry: int = 3000
    retry_jitter: int = 2000
    retry_after: int = 5
    drain_timeout: float = 5.0
    drain_on_signal: bool = True
    path: str = "/events"
    websocket_path: str | None = "/ws"
    max_message_bytes: int = 65536
    publish_timeout: float = 5.0
    publish_concurrency: int = 8
    fast_path: bool = True

    def __post_init__(self) -> None:
        origins = self.cors_origins
        if isinstance(origins, str):  # one origin given as a str, not a list of its characters
            origins = (origins,)
        object.__setattr__(self, "cors_origins", tuple(origins))
        if "*" in self.cors_origins:
            raise InvalidArgument(
                "cors_origins must list exact origins like 'https://app.example.com', not '*': "
                "credentials never work with a wildcard, and an open stream service is what "
                "the list is there to prevent"
            )
        for name in (*_POSITIVE_INTS, "publish_concurrency"):
            number = getattr(self, name)
            if not isinstance(number, int) or isinstance(number, bool) or number < 1:
                raise InvalidArgument(f"{name} must be an int >= 1, not {number!r}")
        for name in _MILLISECONDS:
            number = getattr(self, name)
            if not isinstance(number, int) or isinstance(number, bool) or number < 0:
                raise InvalidArgument(f"{name} must be an int >= 0 milliseconds, not {number!r}")
        for name in _SECONDS:
            number = getattr(self, name)
            if not isinstance(number, int | float) or not number > 0:
                raise InvalidArgument(f"{name} must be a number of seconds > 0, not {number!r}")
        if not isinstance(self.retry_after, int) or self.retry_after < 0:
            raise InvalidArgument(
                f"retry_after must be an int >= 0 seconds, not {self.retry_after!r}"
            )
        if not isinstance(self.drain_timeout, int | float) or not self.drain_timeout >= 0:
            raise InvalidArgument(
                f"drain_timeout must be a number of seconds >= 0, not {self.drain_timeout!r}"
            )
        for name, value in (("path", self.path), ("websocket_path", self.websocket_path)):
            if value is not None and (not isinstance(value, str) or not value.startswith("/")):
                raise InvalidArgument(f"{name} must be a path starting with '/', not {value!r}")

    @property
    def retry_range(self) -> tuple[int, int]:
        """`(retry, retry_jitter)`: a stream's `retry:` is the first plus up to the second."""
        return self.retry, self.retry_jitter
