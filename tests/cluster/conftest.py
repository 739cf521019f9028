"""Fixtures of the Redis Cluster suite: real clusters of `redis-server --cluster-enabled yes`.

- `cluster`: 3 masters, no replicas, for the whole session (tests pick channels by the master
  that owns their slot, so they do not depend on each other; a test that moves a slot moves one
  that no other test uses).
- `failover_cluster`: 3 masters with a replica each, for one test module: the failover test
  kills a master with SIGKILL.

Each is started on free loopback ports by `sidestream.cluster_testing.LocalCluster`, which stops
every node by PID and removes its directory at the end. They need `redis-server` and
`redis-cli` (Redis >= 7, for sharded pub/sub); without them the tests skip, and CI
(`SIDESTREAM_NO_SKIP=1`) counts that skip as a failure.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from sidestream.cluster_testing import REDIS_CLI, REDIS_SERVER, LocalCluster


def _redis_major() -> int:
    if not (shutil.which(REDIS_SERVER) and shutil.which(REDIS_CLI)):
        return 0
    out = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True).stdout
    version = out.split("v=", 1)[1].split()[0] if "v=" in out else "0"
    return int(version.split(".")[0])


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    if _redis_major() < 7:
        pytest.skip("needs redis-server and redis-cli >= 7 (sharded pub/sub)")
    with LocalCluster(masters=3) as started:
        yield started


@pytest.fixture(scope="module")
def failover_cluster() -> Iterator[LocalCluster]:
    if _redis_major() < 7:
        pytest.skip("needs redis-server and redis-cli >= 7 (sharded pub/sub)")
    with LocalCluster(masters=3, replicas=1, node_timeout=1000) as started:
        yield started


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own."""
    return f"sidestream-cluster-test:{uuid.uuid4().hex[:8]}:"
