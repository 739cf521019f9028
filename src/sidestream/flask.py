"""A Flask extension: the bus, stream tokens and a long-poll blueprint, set from `app.config`.

```python
import flask

from sidestream.flask import Sidestream

app = flask.Flask(__name__)
app.config.update(SIDESTREAM_REDIS_URL="memory://", SIDESTREAM_KEY_PREFIX="doc-ext:")
# or: sidestream = Sidestream(); sidestream.init_app(app, authorize_read=...)
sidestream = Sidestream(app, authorize_read=lambda channel: channel == "news")

with app.app_context():
    first = sidestream.publish("news", "hello")

reply = app.test_client().get("/poll/news?last_id=0-0&timeout=1")
print(reply.status_code, [event["data"] for event in reply.json["events"]])
#> 200 ['hello']
```

[`init_app`][sidestream.flask.Sidestream.init_app] reads the `SIDESTREAM_*` keys of
[`CONFIG_KEYS`][sidestream.flask.CONFIG_KEYS] from `app.config`, checks them (a bad or misspelt
key raises [`InvalidConfig`][sidestream.errors.InvalidConfig] naming it, before the app serves
anything), and stores everything the app needs in `app.extensions["sidestream"]`: one Redis
client (one connection pool) for the app's whole life, a [`Bus`][sidestream.bus.Bus] on it, and a
[`StreamTokens`][sidestream.tokens.StreamTokens] when a token key is set. Nothing is kept at
module level, so one `Sidestream()` object serves any number of apps in one process (an app
factory, tests): its methods act on the current app (`flask.current_app`).

It also registers:

- the **long-poll blueprint** `sidestream` at `SIDESTREAM_LONGPOLL_PREFIX` (default `/poll`):
  `GET /poll/<channel>?last_id=&timeout=`, answered by
  [`flask_long_poll`][sidestream.flask.flask_long_poll] once the
  [`authorize_read`][sidestream.flask.Sidestream.authorize_read] hook allowed it. Reads are
  closed until a hook is given: without one every poll is a 403 naming the fix, and public
  channels say [`allow_everyone`][sidestream.flask.allow_everyone];
- with `SIDESTREAM_JSON_ERRORS` (default on), **JSON error handlers** for the library's errors
  raised in any view: a bad channel name, cursor or event type is a 400, data over the cap a 413,
  [`Unauthorized`][sidestream.errors.Unauthorized] a 401 and
  [`Forbidden`][sidestream.errors.Forbidden] a 403, each with `{"error": ..., "detail": ...}`.

**Connections.** Flask has no "app stops" signal, and `teardown_appcontext` runs after every
request, so closing the client there would make a pool per request. The pool lives as long as the
app instead: its connections are closed when the app is garbage-collected or the interpreter
exits, or at once by [`close`][sidestream.flask.Sidestream.close] (tests, a worker's exit hook).
redis-py's pool notices a fork, so it is safe with gunicorn's `--preload`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import os
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Final, ParamSpec, TypeAlias
from urllib.parse import urlencode, urlsplit

import flask

from sidestream.bus import MEMORY_URL, Bus, connect, validate_channel
from sidestream.errors import (
    AccessDenied,
    Forbidden,
    InvalidArgument,
    InvalidChannel,
    InvalidConfig,
    InvalidCursor,
    InvalidEvent,
    InvalidTokenConfig,
    NotInitialized,
    PayloadTooLarge,
    SidestreamError,
    Unauthorized,
)
from sidestream.longpoll import long_poll
from sidestream.tokens import DEFAULT_AUDIENCE, DEFAULT_LIFETIME, KEY_ENV, StreamTokens

__all__ = [
    "CONFIG_KEYS",
    "EXTENSION_KEY",
    "ConfigKey",
    "ReadAuthorizer",
    "Settings",
    "Sidestream",
    "State",
    "TokenGrant",
    "allow_everyone",
    "bus",
    "flask_long_poll",
    "get_state",
]

log = logging.getLogger("sidestream.flask")

EXTENSION_KEY: Final = "sidestream"
"""The key of this extension's [`State`][sidestream.flask.State] in `app.extensions`, and the
name of its blueprint."""

ReadAuthorizer: TypeAlias = Callable[[str], bool]
"""`(channel) -> bool`, called inside the request: `True` lets the request read the channel."""


def allow_everyone(channel: str) -> bool:
    """The read hook for public channels, said by name: every request may long-poll every
    channel. The extension logs a warning when it is given this hook."""
    return True


def _check_hook(hook: ReadAuthorizer | None) -> ReadAuthorizer | None:
    if hook is not None and (
        inspect.iscoroutinefunction(hook) or not callable(hook) or isinstance(hook, type)
    ):
        raise InvalidConfig(
            f"authorize_read must be a plain function (channel) -> bool, not {hook!r}: the "
            "stream service's async authorizers (sidestream.access.allow_everyone, "
            "sidestream.tokens.authorizer) do not fit here; public channels use "
            "sidestream.flask.allow_everyone"
        )
    if hook is allow_everyone:
        log.warning(
            "authorize_read=allow_everyone: every request may long-poll every channel; give a "
            "hook that checks the user unless every channel is public"
        )
    return hook


TokenGrant: TypeAlias = tuple[str | None, Sequence[str]]
"""What a token view returns: the token's subject (a user id, or `None`) and its channels."""

P = ParamSpec("P")

_NO_STORE: Final = {"Cache-Control": "no-store"}
_REDIS_SCHEMES: Final = ("redis", "rediss", "unix")
_MAX_LONGPOLL_LIMIT: Final = 10_000
_OTHER_METHODS: Final = ["POST", "PUT", "PATCH", "DELETE"]


@dataclass(frozen=True)
class Settings:
    """The checked configuration of one app (see [`CONFIG_KEYS`][sidestream.flask.CONFIG_KEYS])."""

    redis_url: str
    key_prefix: str = "sidestream:"
    history_maxlen: int = 1000
    max_data_bytes: int = 65536
    token_key: str | bytes | None = field(default=None, repr=False)
    token_audience: str = DEFAULT_AUDIENCE
    token_ttl: float = DEFAULT_LIFETIME
    stream_url: str | None = None
    longpoll_prefix: str | None = "/poll"
    longpoll_limit: int = 100
    json_errors: bool = True

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Read and check the `SIDESTREAM_*` keys of `config`, as
        [`CONFIG_KEYS`][sidestream.flask.CONFIG_KEYS] says (the one table of keys).

        Args:
            config: `app.config`, or any mapping.
            environ: Where the `REDIS_URL` and `SIDESTREAM_TOKEN_KEY` defaults come from
                (default: `os.environ`).

        Raises:
            InvalidConfig: a key is misspelt, of the wrong type or out of range; the message
                names it and says what to set.
        """
        env = os.environ if environ is None else environ
        known = [key.name for key in CONFIG_KEYS]
        for name in config:
            if isinstance(name, str) and name.startswith("SIDESTREAM_") and name not in known:
                # Compare what follows SIDESTREAM_: the shared prefix would make everything close.
                close = difflib.get_close_matches(name[11:], [k[11:] for k in known], n=1)
                hint = (
                    f"did you mean SIDESTREAM_{close[0]}?"
                    if close
                    else "the settings are " + ", ".join(known)
                )
                raise InvalidConfig(f"{name} is not a sidestream setting: {hint}")
        return cls(**{key.setting: key.read(config, env) for key in CONFIG_KEYS})


_DEFAULTS: Final = {f.name: f.default for f in fields(Settings)}


def _url(name: str, value: object) -> str:
    if value is None:
        raise InvalidConfig(
            f"{name} is not set (nor REDIS_URL): set it to your Redis, like "
            "'redis://host:6379/0', or to 'memory://' for the embedded fakeredis server of this "
            "one process (for trying and testing only)"
        )
    if not isinstance(value, str):
        raise InvalidConfig(
            f"{name} must be a str URL like 'redis://localhost:6379/0', not {value!r}"
        )
    if value != MEMORY_URL and urlsplit(value).scheme not in _REDIS_SCHEMES:
        raise InvalidConfig(
            f"{name} {value!r} is not a Redis URL: use redis://host:port/db, "
            "rediss:// (TLS), unix:///path/to/socket, or memory:// for the embedded fakeredis"
        )
    return value


def _key_prefix(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidConfig(f"{name} must be a str like 'myapp:', not {value!r}")
    return value


def _count(maximum: int | None = None) -> Callable[[str, object], int]:
    def check(name: str, value: object) -> int:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < 1
            or (maximum is not None and value > maximum)
        ):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise InvalidConfig(f"{name} must be an int >= 1{upper}, not {value!r}")
        return value

    return check


def _token_key(name: str, value: object) -> str | bytes | None:
    if value is not None and not isinstance(value, str | bytes):
        raise InvalidConfig(f"{name} must be a str, not {type(value).__name__}")
    return value


def _audience(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidConfig(f"{name} must be a non-empty str (the service's name), not {value!r}")
    return value


def _seconds(name: str, value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 1:
        raise InvalidConfig(f"{name} must be a number of seconds >= 1, not {value!r}")
    return float(value)


def _stream_url(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not (
        value.startswith("/") or urlsplit(value).scheme in ("http", "https")
    ):
        raise InvalidConfig(
            f"{name} must be the service's events URL, like "
            f"'https://stream.example.com/events' or '/events', not {value!r}"
        )
    return value


def _path_prefix(name: str, value: object) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or value.endswith("/")
        or any(c in value for c in "<>?#")
    ):
        raise InvalidConfig(
            f"{name} must be a path like '/poll' (a leading '/', no trailing "
            f"'/'), or None for no long-poll blueprint, not {value!r}"
        )
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidConfig(f"{name} must be True or False, not {value!r}")
    return value


@dataclass(frozen=True)
class ConfigKey:
    """One `app.config` key the extension reads: the one place that says what it is called,
    which [`Settings`][sidestream.flask.Settings] field it sets, how it is checked and what
    the docs show.

    Attributes:
        name: The key, e.g. `SIDESTREAM_REDIS_URL`.
        default: The default, as the docs show it (derived from `Settings` unless given).
        meaning: What it sets.
        setting: The `Settings` field it sets.
        env: An environment variable read when the key is unset or empty.
    """

    name: str
    default: str
    meaning: str
    setting: str = ""
    env: str | None = None
    check: Callable[[str, Any], Any] = field(default=_key_prefix, repr=False, compare=False)

    def read(self, config: Mapping[str, Any], environ: Mapping[str, str]) -> Any:
        """The key's checked value from `config` (else the environment, else the default)."""
        default = _DEFAULTS[self.setting]
        raw = config.get(self.name, None if default is MISSING else default)
        if self.env is not None:
            raw = raw or environ.get(self.env) or None
        return self.check(self.name, raw)


def _key(
    name: str,
    field_name: str,
    check: Callable[[str, Any], Any],
    meaning: str,
    *,
    env: str | None = None,
    shown: str | None = None,
) -> ConfigKey:
    if shown is None:
        default = _DEFAULTS[field_name]
        shown = (
            "none"
            if default is None
            else f"`{default:g}`"
            if isinstance(default, float)
            else f"`{default}`"
        )
    return ConfigKey(name, shown, meaning, field_name, env, check)


CONFIG_KEYS: Final[tuple[ConfigKey, ...]] = (
    _key("SIDESTREAM_REDIS_URL", "redis_url", _url,
         "Redis to publish to and wait on (`redis://`, `rediss://`, `unix://`); `memory://` is "
         "the embedded fakeredis, only when asked for. Pool options go in the query: "
         "`?max_connections=200`.",
         env="REDIS_URL", shown="env `REDIS_URL`; required"),
    _key("SIDESTREAM_KEY_PREFIX", "key_prefix", _key_prefix,
         "Prefix of every Redis key and pub/sub channel; the stream service must use the same."),
    _key("SIDESTREAM_HISTORY_MAXLEN", "history_maxlen", _count(),
         "Events kept per channel (approximately) for clients that resume."),
    _key("SIDESTREAM_MAX_DATA_BYTES", "max_data_bytes", _count(),
         "Largest event data; a bigger `publish` raises `PayloadTooLarge` (413)."),
    _key("SIDESTREAM_TOKEN_KEY", "token_key", _token_key,
         "HS256 key (32 bytes or more) shared with the stream service. Without it, issuing a "
         "token raises `InvalidConfig`.",
         env=KEY_ENV, shown=f"env `{KEY_ENV}`, else none"),
    _key("SIDESTREAM_TOKEN_AUDIENCE", "token_audience", _audience,
         "The tokens' `aud` claim; the service requires the same."),
    _key("SIDESTREAM_TOKEN_TTL", "token_ttl", _seconds, "Seconds a stream token lives."),
    _key("SIDESTREAM_STREAM_URL", "stream_url", _stream_url,
         "The service's `/events` URL (absolute, or a path on this site). When set, a token "
         "endpoint also answers with a ready `url`."),
    _key("SIDESTREAM_LONGPOLL_PREFIX", "longpoll_prefix", _path_prefix,
         "Where the long-poll blueprint answers `GET <prefix>/<channel>`; `None` registers no "
         "blueprint."),
    _key("SIDESTREAM_LONGPOLL_LIMIT", "longpoll_limit", _count(_MAX_LONGPOLL_LIMIT),
         "Most events in one long-poll answer (the client gets the rest at once on its next "
         "poll)."),
    _key("SIDESTREAM_JSON_ERRORS", "json_errors", _flag,
         "Register JSON 4xx handlers for the library's errors raised in any view."),
)  # fmt: skip
"""Every key the extension reads, written once: its name, the `Settings` field it sets, its
check, and the docs' default and meaning (the extension's page shows this table). Any other
`SIDESTREAM_*` key is refused as a likely typo."""


@dataclass
class State:
    """What the extension keeps for one app, in `app.extensions["sidestream"]`.

    Attributes:
        settings: The checked configuration.
        bus: The app's bus, on the app's one Redis client.
        tokens: The token signer, or `None` when no token key is set.
        authorize_read: This app's read hook, if `init_app` was given one (else the
            extension's).
    """

    settings: Settings
    bus: Bus
    tokens: StreamTokens | None
    authorize_read: ReadAuthorizer | None
    extension: Sidestream = field(repr=False)
    _closer: weakref.finalize[Any, Any] = field(repr=False)

    def close(self) -> None:
        """Disconnect the app's Redis pool (later commands would connect again)."""
        self._closer()


def get_state(app: flask.Flask | None = None) -> State:
    """The extension's [`State`][sidestream.flask.State] for `app` (default: the current app).

    Raises:
        NotInitialized: outside an app context, or the app was never given to `init_app`.
    """
    if app is None:
        if not flask.has_app_context():
            raise NotInitialized(
                "no Flask app here: use sidestream inside a request or `with app.app_context():`"
            )
        app = flask.current_app
    state = app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, State):
        raise NotInitialized(
            f"sidestream is not initialized on app {app.name!r}: call "
            "Sidestream(app) or sidestream.init_app(app) in your app factory"
        )
    return state


def bus() -> Bus:
    """The current app's [`Bus`][sidestream.bus.Bus], for views and blueprints that do not
    have the extension object at hand."""
    return get_state().bus


class Sidestream:
    """The Flask extension: `Sidestream(app)`, or `ext = Sidestream()` then `ext.init_app(app)`.

    Args:
        app: An app to initialize now.
        authorize_read: A default read hook for every app (see
            [`authorize_read`][sidestream.flask.Sidestream.authorize_read]).
    """

    def __init__(
        self, app: flask.Flask | None = None, *, authorize_read: ReadAuthorizer | None = None
    ) -> None:
        self._read_hook = _check_hook(authorize_read)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask, *, authorize_read: ReadAuthorizer | None = None) -> None:
        """Check `app.config`, connect the app's Redis client, register the blueprint.

        Args:
            app: The Flask app.
            authorize_read: A read hook for this app only, overriding the extension's.
                Without any hook every long poll is refused (403).

        Raises:
            InvalidConfig: a `SIDESTREAM_*` key is wrong (the message names it), or the app is
                already initialized.
        """
        if EXTENSION_KEY in app.extensions:
            raise InvalidConfig(
                f"sidestream is already initialized on app {app.name!r}: call init_app once per app"
            )
        settings = Settings.from_config(app.config)
        tokens = None
        if settings.token_key is not None:
            try:
                tokens = StreamTokens(
                    settings.token_key,
                    audience=settings.token_audience,
                    lifetime=settings.token_ttl,
                )
            except InvalidTokenConfig as exc:
                raise InvalidConfig(f"SIDESTREAM_TOKEN_KEY: {exc}") from exc
        client = connect(settings.redis_url)  # lazy: no connection until the first command
        app.extensions[EXTENSION_KEY] = State(
            settings=settings,
            bus=Bus(
                client,
                prefix=settings.key_prefix,
                maxlen=settings.history_maxlen,
                max_data_bytes=settings.max_data_bytes,
            ),
            tokens=tokens,
            authorize_read=_check_hook(authorize_read),
            extension=self,
            _closer=weakref.finalize(app, client.close),
        )
        if settings.longpoll_prefix is not None:
            app.register_blueprint(_long_poll_blueprint(), url_prefix=settings.longpoll_prefix)
        if settings.json_errors:
            for kind, _status, _code in _ERROR_CODES:
                app.register_error_handler(kind, _error_response)

    # --- the current app's parts -----------------------------------------------------------

    @property
    def bus(self) -> Bus:
        """The current app's [`Bus`][sidestream.bus.Bus]."""
        return get_state().bus

    @property
    def read_hook(self) -> ReadAuthorizer | None:
        """The extension's default read hook (an app's own, given to `init_app`, wins)."""
        return self._read_hook

    @property
    def settings(self) -> Settings:
        """The current app's [`Settings`][sidestream.flask.Settings]."""
        return get_state().settings

    def publish(self, channel: str, data: str, event: str | None = None) -> str:
        """Publish on the current app's bus; see [`Bus.publish`][sidestream.bus.Bus.publish].

        Returns:
            The event's id.
        """
        return get_state().bus.publish(channel, data, event)

    def issue_token(
        self, subject: str | None, channels: Sequence[str], *, lifetime: float | None = None
    ) -> str:
        """Sign a stream token for `subject` that may read `channels`.

        Args:
            subject: The `sub` claim (a user id), or `None`.
            channels: The channels the token grants (a list, not one string).
            lifetime: Seconds it lives; default `SIDESTREAM_TOKEN_TTL`.

        Raises:
            InvalidConfig: the app has no `SIDESTREAM_TOKEN_KEY`.
        """
        state = get_state()
        if state.tokens is None:
            raise InvalidConfig(
                f"SIDESTREAM_TOKEN_KEY is not set for app {flask.current_app.name!r}: set it (or "
                "the env var of that name) to the key the stream service verifies with; generate "
                "one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return state.tokens.issue(subject, subscribe=_names(channels), lifetime=lifetime)

    def stream_url(self, channels: Sequence[str], token: str) -> str:
        """`SIDESTREAM_STREAM_URL` with the channels and the token in the query string.

        Raises:
            InvalidConfig: `SIDESTREAM_STREAM_URL` is not set.
        """
        base = get_state().settings.stream_url
        if base is None:
            raise InvalidConfig(
                "SIDESTREAM_STREAM_URL is not set: set it to the stream service's events URL"
            )
        query = urlencode({"channel": _names(channels), "token": token}, doseq=True)
        return f"{base}{'&' if '?' in base else '?'}{query}"

    # --- hooks and views -------------------------------------------------------------------

    def authorize_read(self, hook: ReadAuthorizer) -> ReadAuthorizer:
        """Register the hook that decides whether the current request may long-poll a channel.

        It is called inside the request (so it can use `flask.session`, `flask.g`, your login
        library) with the channel name, after the name was checked. `True` allows; anything else
        answers `403 {"error": "forbidden", ...}`; raising
        [`Unauthorized`][sidestream.errors.Unauthorized] or
        [`Forbidden`][sidestream.errors.Forbidden] answers 401 or 403 with its reason. Without a
        hook every long poll is refused with 403; public channels say
        [`allow_everyone`][sidestream.flask.allow_everyone].

        Use it as a decorator: `@sidestream.authorize_read`.
        """
        self._read_hook = _check_hook(hook)
        return hook

    def token_endpoint(self, grant: Callable[P, TokenGrant]) -> Callable[P, flask.Response]:
        """Turn a function that decides `(subject, channels)` into a token view.

        ```python
        import flask

        from sidestream.errors import Unauthorized
        from sidestream.flask import Sidestream

        app = flask.Flask(__name__)
        app.config["SIDESTREAM_REDIS_URL"] = "memory://"
        app.config["SIDESTREAM_TOKEN_KEY"] = "a-secret-of-at-least-32-bytes-long!!"
        sidestream = Sidestream(app)

        @app.get("/stream-token")
        @sidestream.token_endpoint
        def stream_token():
            user = flask.request.args.get("user")  # your login decides who this is
            if user is None:
                raise Unauthorized("log in first")
            return user, [f"user:{user}"]

        client = app.test_client()
        print(client.get("/stream-token").json)
        #> {'detail': 'log in first', 'error': 'unauthorized'}
        print(client.get("/stream-token?user=ann").json["channels"])
        #> ['user:ann']
        ```

        The view answers `{"token", "channels", "expires_in"}` (plus `url` when
        `SIDESTREAM_STREAM_URL` is set) with `Cache-Control: no-store`, or 401/403 JSON when
        `grant` raises [`Unauthorized`][sidestream.errors.Unauthorized] /
        [`Forbidden`][sidestream.errors.Forbidden]. Route arguments are passed on to `grant`.
        """

        @functools.wraps(grant)
        def view(*args: P.args, **kwargs: P.kwargs) -> flask.Response:
            try:
                subject, channels = grant(*args, **kwargs)
            except AccessDenied as exc:
                return _error_response(exc)
            channels = _names(channels)
            token = self.issue_token(subject, channels)
            body: dict[str, Any] = {
                "token": token,
                "channels": channels,
                "expires_in": int(get_state().settings.token_ttl),
            }
            if get_state().settings.stream_url is not None:
                body["url"] = self.stream_url(channels, token)
            return _json(200, body)

        return view

    def close(self, app: flask.Flask | None = None) -> None:
        """Disconnect `app`'s (default: the current app's) Redis pool now."""
        get_state(app).close()


# ---------------------------------------------------------------------------------------------
# The long-poll blueprint and the JSON errors
# ---------------------------------------------------------------------------------------------


def flask_long_poll(bus: Bus, channel: str | None = None, *, limit: int = 100) -> flask.Response:
    """[`long_poll`][sidestream.longpoll.long_poll] for a Flask view, reading the request's query
    (it lives here, beside the extension, so that `sidestream.longpoll` imports no framework).

    Reads `last_id` and `timeout` from the query string, and `channel` too unless the view
    passes one (a view that serves a user's own channel should: `channel=f"user:{user.id}"`).

    ```python
    import flask

    from sidestream.bus import Bus, connect
    from sidestream.flask import flask_long_poll

    app = flask.Flask(__name__)
    bus = Bus(connect("memory://"), prefix="doc-flask:")

    @app.get("/poll")
    def poll() -> flask.Response:
        return flask_long_poll(bus)

    response = app.test_client().get("/poll?channel=news")
    print(response.status_code, response.json)
    #> 200 {'events': [], 'last_id': '0-0', 'reset': False}
    response = app.test_client().get("/poll?channel=news&last_id=0-0&timeout=soon")
    print(response.status_code, response.json["parameter"])
    #> 400 timeout
    ```
    """
    args = flask.request.args
    reply = long_poll(
        bus,
        channel if channel is not None else args.get("channel", ""),
        args.get("last_id"),
        args.get("timeout"),
        limit=limit,
    )
    response = flask.jsonify(reply.body)
    response.status_code = reply.status
    response.headers.update(reply.headers)
    return response


def _names(channels: Sequence[str]) -> list[str]:
    """`channels` as a list; one string is refused (`list("news")` would be four channels)."""
    if isinstance(channels, str):
        raise InvalidArgument(f"channels must be a list of names, like [{channels!r}], not a str")
    return list(channels)


def _long_poll_blueprint() -> flask.Blueprint:
    blueprint = flask.Blueprint(EXTENSION_KEY, __name__)

    # Another method on these routes gets a JSON 405 too (Flask's own is an HTML page).
    @blueprint.route("/", methods=_OTHER_METHODS)
    @blueprint.route("/<path:channel>", methods=_OTHER_METHODS)
    def other_method(channel: str = "") -> flask.Response:
        detail = f"{flask.request.method} is not a method of the long-poll route: use GET"
        response = _json(405, {"error": "method_not_allowed", "detail": detail})
        response.headers["Allow"] = "GET, HEAD, OPTIONS"
        return response

    @blueprint.get("/")
    def missing_channel() -> flask.Response:
        return _json(
            400,
            {
                "error": "invalid_parameter",
                "parameter": "channel",
                "detail": f"name the channel in the path: GET {flask.request.path}<channel>",
            },
        )

    @blueprint.get("/<path:channel>")
    def poll(channel: str) -> flask.Response:
        state = get_state()
        try:
            validate_channel(channel)
        except InvalidChannel as exc:
            body = {"error": "invalid_parameter", "parameter": "channel", "detail": str(exc)}
            return _json(400, body)
        hook = state.authorize_read or state.extension.read_hook
        if hook is None:
            return _error_response(
                Forbidden(
                    "reads are closed: this app has no read hook; register one with "
                    "@sidestream.authorize_read (or authorize_read=sidestream.flask."
                    "allow_everyone for public channels)"
                )
            )
        try:
            allowed = hook(channel)
        except AccessDenied as exc:
            return _error_response(exc)
        if allowed is not True:
            return _error_response(Forbidden(f"you may not read channel {channel!r}"))
        return flask_long_poll(state.bus, channel, limit=state.settings.longpoll_limit)

    return blueprint


_ERROR_CODES: Final[tuple[tuple[type[SidestreamError], int, str], ...]] = (
    (InvalidChannel, 400, "invalid_channel"),
    (InvalidCursor, 400, "invalid_cursor"),
    (InvalidEvent, 400, "invalid_event"),
    (PayloadTooLarge, 413, "payload_too_large"),
    (Unauthorized, 401, "unauthorized"),
    (AccessDenied, 403, "forbidden"),
)


def _error_response(exc: SidestreamError) -> flask.Response:
    """The JSON answer to one of the client-facing errors in `_ERROR_CODES`.

    Misuse errors (`InvalidConfig`, `InvalidArgument` ...) have no handler: they stay 500s,
    bugs to see in the log rather than a client's fault.
    """
    status, code = next((s, c) for kind, s, c in _ERROR_CODES if isinstance(exc, kind))
    detail = exc.reason if isinstance(exc, AccessDenied) else str(exc)
    return _json(status, {"error": code, "detail": detail})


def _json(status: int, body: dict[str, Any]) -> flask.Response:
    response = flask.jsonify(body)
    response.status_code = status
    response.headers.update(_NO_STORE)
    return response
