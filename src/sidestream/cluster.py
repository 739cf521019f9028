"""Redis Cluster: the URL that selects it, its clients, and where a channel lives.

A `REDIS_URL` of the form `redis+cluster://host:port[,host:port...]` (or `rediss+cluster://` for
TLS) selects a Redis Cluster; every other form (`redis://`, `rediss://`, `unix://`) stays one
node, as before. The hosts are *startup nodes*: the client asks any of them for the slot map and
then talks to whichever master owns a key, following `-MOVED` and `-ASK` by itself. Listing two or
three nodes lets a process start while one of them is down. Query options (`?password=...`,
`?max_connections=...`, `?socket_timeout=...`) apply to every node's connections; the database
is always 0 on a cluster.

```python
from sidestream.cluster import parse_cluster_url

url = "redis+cluster://10.0.0.1:7000,10.0.0.2:7000/?max_connections=200"
print(parse_cluster_url(url))
#> ('redis://10.0.0.1:7000/?max_connections=200', [('10.0.0.2', 7000)])
```

On a cluster the bus publishes with `SPUBLISH` (sharded pub/sub, Redis >= 7): a channel's stream
`…stream:{name}` and live channel `…live:{name}` share the hash tag `{name}`, so one slot, one
master, holds both and the publish script runs there whole. The stream service then needs one
pub/sub connection per master, not one for the whole cluster:
[`ShardedPubSub`][sidestream.cluster_pubsub.ShardedPubSub].
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import RedisClusterException

from sidestream.errors import InvalidConfig

__all__ = [
    "CLUSTER_SCHEMES",
    "connect_cluster",
    "connect_cluster_async",
    "is_cluster",
    "is_cluster_url",
    "parse_cluster_url",
]

CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""The URL schemes that select a Redis Cluster, and the one-node scheme each stands for."""


def is_cluster_url(url: str) -> bool:
    """True when `url` names a Redis Cluster (`redis+cluster://` or `rediss+cluster://`)."""
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def is_cluster(client: Any) -> bool:
    """True for a redis-py cluster client (sync or asyncio), whoever made it."""
    return isinstance(client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster)


def parse_cluster_url(url: str) -> tuple[str, list[tuple[str, int]]]:
    """Split a cluster URL into a one-node URL for the first startup node (with the options)
    and the other startup nodes as `(host, port)`.

    Raises:
        InvalidConfig: not a cluster URL, no host, a host without a port, or a database other
            than 0.
    """
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme.lower())
    example = "'redis+cluster://10.0.0.1:7000,10.0.0.2:7000'"
    if scheme is None:
        raise InvalidConfig(f"{url!r} is not a cluster URL: use {example} (or rediss+cluster://)")
    credentials, _, hosts = parts.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise InvalidConfig(
                f"cluster node {item!r} in REDIS_URL is not host:port: list the startup nodes "
                f"like {example}"
            )
        nodes.append((host.strip("[]"), int(port)))
    if parts.path not in ("", "/", "/0"):
        raise InvalidConfig(
            f"a Redis Cluster has database 0 only, not {parts.path.lstrip('/')!r}: drop the path "
            f"from the URL, like {example}"
        )
    first_host, first_port = nodes[0]
    netloc = f"{credentials}@" if credentials else ""
    host = f"[{first_host}]" if ":" in first_host else first_host
    netloc += f"{host}:{first_port}"
    first = urlunsplit((scheme, netloc, "/", parts.query, ""))
    return first, nodes[1:]


def connect_cluster(url: str, **defaults: Any) -> redis.cluster.RedisCluster:
    """A sync cluster client for `url` (`redis+cluster://...`); `defaults` are client settings
    that the URL's query options override.

    Unlike a one-node client it reads the slot map at once, so it fails here, with
    `redis.ConnectionError`, when no startup node answers.
    """
    first, others = parse_cluster_url(url)
    startup = [redis.cluster.ClusterNode(host, port) for host, port in others]  # type: ignore[no-untyped-call]
    try:
        return redis.cluster.RedisCluster.from_url(first, startup_nodes=startup, **defaults)
    except RedisClusterException as exc:  # not a RedisError: say it as the one-node client would
        raise redis.ConnectionError(f"cannot reach the Redis Cluster at {url!r}: {exc}") from exc


def connect_cluster_async(url: str, **defaults: Any) -> redis.asyncio.cluster.RedisCluster:
    """An asyncio cluster client for `url`; it finds the slot map on its first command."""
    first, others = parse_cluster_url(url)
    startup = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in others]
    return redis.asyncio.cluster.RedisCluster.from_url(first, startup_nodes=startup, **defaults)
