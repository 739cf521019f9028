"""Mercure topic matchers and the character and namespace rules of draft-08 (Mercure 1.0).

One place for the rules that the publisher, the tokens and a hub all apply:

- [`forbidden_char`][sidestream.mercure_match.forbidden_char]: topics, ids, types and matchers
  carry no control characters (C0, DEL, C1) and no Unicode format characters (`Cf`).
- [`TopicMatcher`][sidestream.mercure_match.TopicMatcher]: a matcher of type `exact`
  (byte-for-byte) or `urlpattern` (the URL Pattern standard, evaluated by the `urlpattern`
  package, whose Rust regex engine matches in linear time); the value `*` matches every topic
  whatever the type.
- [`in_reserved_namespace`][sidestream.mercure_match.in_reserved_namespace]: whether a topic
  resolves into the hub's own path (`/.well-known/mercure` and below), which publishers may not
  use.

`urlpattern` is imported only when a `urlpattern` matcher is built (the `mercure` extra).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

WILDCARD = "*"
EXACT = "exact"
URLPATTERN = "urlpattern"
MATCHER_TYPES = (EXACT, URLPATTERN)
"""The matcher types draft-08 defines and hubs must support, in canonical spelling."""
MAX_PATTERN_LENGTH = 2048
"""Longest matcher accepted, in characters (the spec asks for an implementation-defined cap)."""


def forbidden_char(text: str) -> str | None:
    """The first character draft-08 forbids in a topic, id, type or matcher (`U+XXXX`), or None.

    Control characters (C0 U+0000-U+001F, DEL U+007F, C1 U+0080-U+009F) would let a value inject
    SSE fields; format characters (category `Cf`: bidi and zero-width controls) are invisible
    and let one identifier pass for another.
    """
    for char in text:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F or unicodedata.category(char) == "Cf":
            return f"U+{code:04X}"
    return None


class InvalidMatcher(ValueError):
    """A topic matcher is not valid for its type (the caller maps it to a 400 or a 401)."""


@dataclass(frozen=True)
class TopicMatcher:
    """One topic matcher: `match` interpreted by `match_type`.

    Attributes:
        match: the topic (`exact`), a URL pattern (`urlpattern`), or `*` for every topic.
        match_type: `"exact"` (the default) or `"urlpattern"`.

    Raises:
        InvalidMatcher: an unknown type, a forbidden character, an over-long or malformed pattern.

    Example:
        ```python
        from sidestream.mercure_match import TopicMatcher

        books = TopicMatcher("https://example.com/books/:id", "urlpattern")
        hub = "https://hub.example.com/.well-known/mercure"
        print(books.matches("https://example.com/books/1", hub))
        #> True
        print(books.matches("https://example.com/books/1/reviews", hub))
        #> False
        ```
    """

    match: str
    match_type: str = EXACT
    _compiled: Any = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.match, str) or not self.match:
            raise InvalidMatcher(f"a matcher is a non-empty string, got {self.match!r}")
        if not isinstance(self.match_type, str) or self.match_type not in MATCHER_TYPES:
            raise InvalidMatcher(
                f"matcher type {self.match_type!r} is not supported; use one of "
                + ", ".join(MATCHER_TYPES)
            )
        if len(self.match) > MAX_PATTERN_LENGTH:
            raise InvalidMatcher(
                f"matcher is {len(self.match)} characters; the limit is {MAX_PATTERN_LENGTH}"
            )
        if bad := forbidden_char(self.match):
            raise InvalidMatcher(f"matcher {self.match!r} contains the forbidden character {bad}")
        if self.match_type == URLPATTERN and self.match != WILDCARD:
            object.__setattr__(self, "_compiled", _compile(self.match))

    def to_json(self) -> dict[str, str]:
        """The topic matcher object of an authorization detail."""
        return {"match": self.match, "match_type": self.match_type}

    def matches(self, topic: str, hub_url: str) -> bool:
        """Whether `topic` is selected; relative patterns and topics resolve against `hub_url`."""
        if self.match == WILDCARD:
            return True
        if self.match_type == EXACT:
            return topic == self.match
        try:
            return bool(self._compiled.test(topic, hub_url))
        except ValueError:  # a topic that is not a URL reference never matches a URL pattern
            return False


# A base that lets a relative pattern compile; it does not change which topics match, because
# matching resolves both the pattern and the topic against the real hub URL.
_PLACEHOLDER_BASE = "https://hub.invalid/.well-known/mercure"


class _Pattern:
    """A URL pattern compiled once per base URL it is evaluated against."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._by_base: dict[str, Any] = {}

    def test(self, topic: str, hub_url: str) -> bool:
        compiled = self._by_base.get(hub_url)
        if compiled is None:
            compiled = _url_pattern(self.source, hub_url)
            if len(self._by_base) < 8:
                self._by_base[hub_url] = compiled
        return bool(compiled.test(topic, hub_url))


def _url_pattern(source: str, base: str) -> Any:
    try:
        from urlpattern import URLPattern
    except ImportError as exc:  # pragma: no cover - the mercure extra installs it
        raise InvalidMatcher(
            "urlpattern matchers need the urlpattern package: pip install 'sidestream[mercure]'"
        ) from exc
    # ignoreCase stays off, as the spec requires: only the host is case-insensitive.
    return URLPattern(source, base, {"ignoreCase": False})


def _compile(source: str) -> _Pattern:
    try:
        _url_pattern(source, _PLACEHOLDER_BASE)
    except ValueError as exc:
        raise InvalidMatcher(f"{source!r} is not a well-formed URL pattern: {exc}") from exc
    return _Pattern(source)


_UNRESERVED = re.compile(r"%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])")


def _decode_unreserved(path: str) -> str:
    # RFC 3986 percent-encoding normalization: only octets of unreserved characters
    # (ALPHA / DIGIT / "-" / "." / "_" / "~") are decoded; "%2F" stays a literal, not a "/".
    return _UNRESERVED.sub(lambda m: unquote(m.group(0)), path)


def _remove_dot_segments(path: str) -> str:
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(output) > 1:
                output.pop()
        elif segment != ".":
            output.append(segment)
    trailing = path.endswith(("/.", "/..")) and not (output and output[-1] == "")
    return "/".join(output) + ("/" if trailing else "")


def in_reserved_namespace(topic: str, hub_url: str) -> bool:
    """Whether `topic` addresses the hub's own namespace (its path, or anything below it).

    The topic is resolved against `hub_url`; its path gets unreserved percent-encodings decoded
    and dot segments removed before the comparison, so `/.well-known/%6Dercure/x` and
    `/.well-known/mercure/../mercure/x` are caught as well as absolute URLs on any host. A topic
    that is not a URL reference (`urn:...` keeps its own path) is compared the same way and
    normally falls outside.
    """
    hub_path = _remove_dot_segments(_decode_unreserved(urlsplit(hub_url).path)).rstrip("/")
    try:
        resolved = urlsplit(urljoin(hub_url, topic.replace("\\", "/")))
    except ValueError:  # cannot be parsed as a URL reference: cannot name a hub path
        return False
    path = _remove_dot_segments(_decode_unreserved(resolved.path))
    return bool(hub_path) and (path == hub_path or path.startswith(hub_path + "/"))


_TEMPLATE_EXPRESSION = re.compile(r"\{([^{}]*)\}")
_VARIABLE = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
# RFC 6570 simple expansion percent-encodes all but unreserved characters; reserved expansion
# ({+var}) also lets reserved characters and percent-encodings through.
_SIMPLE_VALUE = r"(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})*"
_RESERVED_VALUE = r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"


@dataclass(frozen=True)
class TopicSelector:
    """A draft-07 topic selector (hubs 0.x): `*`, an exact topic, or a URI template.

    URI templates are matched for the expressions hubs' clients use, `{var}` and `{+var}`
    (RFC 6570 levels 1 and 2, one variable each); a template with any other operator is
    refused with [`InvalidMatcher`][sidestream.mercure_match.InvalidMatcher] rather than
    matched wrongly. A selector with a stray brace is no template and matches exactly.

    Example:
        ```python
        from sidestream.mercure_match import TopicSelector

        books = TopicSelector("https://example.com/books/{id}")
        print(books.matches("https://example.com/books/1"))
        #> True
        print(books.matches("https://example.com/books/1/reviews"))
        #> False
        ```
    """

    selector: str
    _regex: Any = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.selector, str) or not self.selector:
            raise InvalidMatcher(f"a selector is a non-empty string, got {self.selector!r}")
        if len(self.selector) > MAX_PATTERN_LENGTH:
            raise InvalidMatcher(f"selector is over {MAX_PATTERN_LENGTH} characters")
        if bad := forbidden_char(self.selector):
            raise InvalidMatcher(f"selector {self.selector!r} holds the character {bad}")
        if "{" not in self.selector and "}" not in self.selector:
            return
        pattern, position = "", 0
        for expression in _TEMPLATE_EXPRESSION.finditer(self.selector):
            body = expression[1]
            reserved = body.startswith("+")
            name = body[1:] if reserved else body
            if not _VARIABLE.fullmatch(name):
                raise InvalidMatcher(
                    f"{{{body}}} in {self.selector!r}: only {{var}} and {{+var}} are supported"
                )
            pattern += re.escape(self.selector[position : expression.start()])
            pattern += _RESERVED_VALUE if reserved else _SIMPLE_VALUE
            position = expression.end()
        if any(
            "{" in part or "}" in part for part in _TEMPLATE_EXPRESSION.split(self.selector)[::2]
        ):
            return  # not a URI template (a stray brace): draft-07 then matches it exactly
        pattern += re.escape(self.selector[position:])
        object.__setattr__(self, "_regex", re.compile(pattern))

    def matches(self, topic: str, hub_url: str = "") -> bool:
        """Whether `topic` is selected (`hub_url` is unused: draft-07 resolves nothing)."""
        if self.selector == WILDCARD or topic == self.selector:
            return True
        return self._regex is not None and self._regex.fullmatch(topic) is not None
