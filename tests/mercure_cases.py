"""What the Mercure tests share: the claims of a draft-08 (Mercure 1.0) access token, topic
matchers written short, the subscription queries every hub refuses, and publishing to the hub
double through Publisher or AsyncPublisher.

Used by tests/test_mercure.py (draft-07 publisher), tests/test_mercure_spec_publication.py
(draft-08 publisher and double), tests/test_mercure_spec_authorization.py (sidestream.tokens)
and tests/test_mercure_spec_hub.py (sidestream's own hub).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from mercure_hub import MercureHub

from sidestream.mercure import AsyncPublisher, Publisher, RetryPolicy

DETAIL_TYPE = "https://mercure.rocks/authorization-detail"

# Section 3: a subscription names its topics with `match` (and `match_<type>`) parameters, in
# lower case, each a valid matcher; anything else is a 400. Both encodings of the bad
# urlpattern (`(` as it is and percent-encoded) must be refused.
BAD_SUBSCRIPTION_QUERIES = [
    "",
    "topic=a",
    "match_regex=a",
    "MATCH=a",
    "Match_exact=a",
    "matches=a",
    "match=a%0Ab",
    "match=a%E2%80%8Eb",  # U+200E LEFT-TO-RIGHT MARK
    "match_urlpattern=https%3A%2F%2Fe.com%2F(a",
    "match_urlpattern=https%3A%2F%2Fe.com%2F%28a",
]

# Draft-07 topic selectors (URI templates, RFC 6570) as (selector, topic, matched): the same
# cases for sidestream.mercure_match and for the hub double.
DRAFT_07_SELECTOR_CASES = [
    ("*", "https://example.com/books/1", True),
    ("https://example.com/books/1", "https://example.com/books/1", True),
    ("https://example.com/books/{id}", "https://example.com/books/1", True),
    ("https://example.com/books/{id}", "https://example.com/books/1/x", False),
    ("https://example.com/books/{+rest}", "https://example.com/books/1/x", True),
    ("https://example.com/{+rest}", "https://example.com/books/1/x?y", True),
    ("https://example.com/books/{id}", "https://example.com/books/{id}", True),
    ("https://example.net/bar/{var}", "https://example.net/foo/a", False),
    ("a{b", "a{b", True),  # a stray brace: no template, matched exactly
    ("a{b", "ab", False),
]


def access_claims(
    *,
    issuer: str,
    audience: str,
    subject: str,
    token_id: str,
    lifetime: int,
    details: list[dict[str, Any]],
    **overrides: Any,
) -> dict[str, Any]:
    """An RFC 9068 access token's claims as draft-08 reads them, issued now for `lifetime`
    seconds by `issuer` (also its client_id), `token_id` its `jti`; `overrides` are claims by
    their own names, and one given as None is left out."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "client_id": issuer,
        "iat": now,
        "exp": now + lifetime,
        "jti": token_id,
        "authorization_details": details,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def matchers(*written: str) -> list[dict[str, str]]:
    """Topic matchers written `value` (exact) or `value match_type`."""
    return [
        {"match": m.split(" ")[0], "match_type": m.split(" ")[1]} if " " in m else {"match": m}
        for m in written
    ]


async def publish_to_double(
    kind: str,
    hub: MercureHub,
    url: str,
    token: Any,
    protocol: str,
    retry: RetryPolicy,
    /,
    *args: Any,
    **kw: Any,
) -> str:
    """Publish to the double through Publisher (`kind` "sync") or AsyncPublisher ("async");
    `args` and `kw` go to `publish`."""
    if kind == "sync":
        client = httpx.Client(transport=hub.transport())
        with Publisher(url, token, protocol=protocol, client=client, retry=retry) as publisher:
            return publisher.publish(*args, **kw)
    async_client = httpx.AsyncClient(transport=hub.transport())
    async with AsyncPublisher(
        url, token, protocol=protocol, client=async_client, retry=retry
    ) as async_publisher:
        return await async_publisher.publish(*args, **kw)
