"""The stream service as real uvicorn processes on a real Redis Cluster, end to end over HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from sidestream.bus import Bus, connect
from sidestream.cluster_testing import LocalCluster, slot_of
from sidestream.testing import StreamCapture, read_events, serve_uvicorn, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


def shard_subscribers(cluster: LocalCluster, live: str) -> int:
    """SSUBSCRIBE connections on the master that owns `live` (PUBSUB SHARDNUMSUB there)."""
    client = cluster.node(cluster.slot_owners()[slot_of(live)]).client()
    try:
        reply = client.execute_command("PUBSUB", "SHARDNUMSUB", live)
    finally:
        client.close()
    return int(reply[1])


def test_two_service_processes_on_a_cluster_deliver_every_event_once(
    cluster: LocalCluster, prefix: str
) -> None:
    env = {"REDIS_URL": cluster.url, "TEST_PREFIX": prefix}
    channels = [cluster.channels_on(port, 1, "svc")[0] for port in cluster.masters()]
    bus = Bus(connect(cluster.url), prefix=prefix)
    options = ("--timeout-graceful-shutdown", "1", "--log-level", "warning")
    try:
        with (
            serve_uvicorn(
                "service_app:app", *options, cwd=HERE, env=env, ready_path="/healthz"
            ) as a,
            serve_uvicorn(
                "service_app:app", *options, cwd=HERE, env=env, ready_path="/healthz"
            ) as b,
        ):
            for base in (a, b):
                health = httpx.get(f"{base}/healthz", timeout=10)
                assert health.status_code == 200 and health.json()["backend"] == "redis"
            urls = [f"{base}/events?channel={name}" for base in (a, b) for name in channels]
            with ThreadPoolExecutor(len(urls)) as pool:
                futures = [pool.submit(read_events, url, count=5, timeout=30) for url in urls]
                # Each process subscribes each channel once, on the channel's own master.
                wait_until(
                    lambda: all(
                        shard_subscribers(cluster, bus.live_channel(n)) == 2 for n in channels
                    ),
                    timeout=30,
                )
                sent = {
                    name: [bus.publish(name, f"{name} {i}") for i in range(5)] for name in channels
                }
                captures: list[StreamCapture] = [f.result() for f in futures]
            for url, capture in zip(urls, captures, strict=True):
                name = url.rsplit("=", 1)[1]
                assert capture.status == 200
                assert [e.id for e in capture.events] == sent[name], url
    finally:
        bus.redis.close()
