"""A real Redis Cluster on loopback, for tests and benchmarks: start, reshape, kill, stop.

[`LocalCluster`][sidestream.cluster_testing.LocalCluster] starts `redis-server
--cluster-enabled yes` processes on free loopback ports (each with its cluster bus port chosen
free too), joins them with `redis-cli --cluster create`, waits until every node reports
`cluster_state:ok` with the same slot map, and at the end stops every process it started by its
PID and removes its temporary directory. Nothing touches any other Redis. On Linux the nodes
also get SIGTERM if the thread that started them ends without stopping them (a test run that was
killed), so start and stop a cluster from the same thread.

```python
from sidestream.cluster_testing import slot_of

print(slot_of("sidestream:stream:{orders}"), slot_of("sidestream:live:{orders}"))
#> 105 105
```

Tests hold one for a module: `with LocalCluster(masters=3, replicas=1) as cluster:`, then
`cluster.channels_on(port, n)` names channels whose slot a given master owns,
`cluster.migrate_slot(slot, port)` moves a slot with its keys, and `cluster.kill(port)` sends
SIGKILL (its replica takes over after `cluster-node-timeout`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.crc import key_slot

from sidestream.testing import free_port

__all__ = ["LocalCluster", "Node", "slot_of"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
_PR_SET_PDEATHSIG = 1


def slot_of(key: str) -> int:
    """The cluster hash slot of `key` (its `{hash tag}` if it has one), as CLUSTER KEYSLOT says."""
    return int(key_slot(key.encode()))


@dataclass
class Node:
    """One redis-server of the cluster."""

    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **options: Any) -> redis.Redis:
        """A plain one-node client to this server (for CLUSTER and CLIENT commands)."""
        return redis.Redis(port=self.port, socket_timeout=10, **options)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class LocalCluster:
    """A Redis Cluster of `masters` masters with `replicas` replicas each, on loopback.

    Args:
        masters: Masters (slot owners): 1 (every slot on one node, a baseline), or 3 or more
            (`redis-cli --cluster create`).
        replicas: Replicas per master (for failover tests).
        node_timeout: `cluster-node-timeout` in ms: how long a silent master has before its
            replica is promoted.
        extra: More `redis-server` arguments for every node.
    """

    def __init__(
        self,
        masters: int = 3,
        *,
        replicas: int = 0,
        node_timeout: int = 1000,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.count = masters * (1 + replicas)
        self.replicas = replicas
        self.node_timeout = node_timeout
        self.extra = extra
        self.nodes: list[Node] = []
        self.directory: Path | None = None

    # -- life cycle ------------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="sidestream-cluster-"))
        for _ in range(self.count):
            port, bus_port = free_port(), free_port()
            directory = self.directory / str(port)
            directory.mkdir()
            command = [
                REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
                "--cluster-config-file", str(directory / "nodes.conf"),
                "--cluster-node-timeout", str(self.node_timeout),
                "--dir", str(directory), "--save", "", "--appendonly", "no",
                "--protected-mode", "no", "--logfile", str(directory / "redis.log"),
                *self.extra,
            ]  # fmt: skip
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
            )
            self.nodes.append(Node(port, process, directory))
        for node in self.nodes:
            self._wait(lambda node=node: self._answers(node), timeout, f"{node.address} to start")
        if self.count == 1:  # one shard (a baseline): redis-cli creates 3 masters or more
            client = self.nodes[0].client()
            try:
                _cmd(client, "CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            finally:
                client.close()
        else:
            create = [REDIS_CLI, "--cluster", "create", *(n.address for n in self.nodes)]
            create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
            done = subprocess.run(create, capture_output=True, text=True, timeout=timeout)
            if done.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}"
                )
        self.wait_ok(timeout)
        if self.replicas:
            self._wait(self._replicas_synced, timeout, "every replica to sync with its master")

    def _replicas_synced(self) -> bool:
        slots = self._slots()
        if any(len(entry) < 3 + self.replicas for entry in slots):
            return False
        for node in self.nodes:
            client = node.client()
            try:
                info = client.info("replication")
            finally:
                client.close()
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def stop(self) -> None:
        """Stop every node this cluster started (by PID) and remove its directory."""
        for node in self.nodes:
            if node.alive:
                node.process.terminate()
        for node in self.nodes:
            try:
                node.process.wait(10)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(10)
        self.nodes = []
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    # -- looking -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`redis+cluster://` with every live node as a startup node."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes if n.alive)

    def node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def slot_owners(self) -> dict[int, int]:
        """slot -> port of the master that owns it, as a live node's CLUSTER SLOTS says."""
        owners: dict[int, int] = {}
        for start, end, master, *_ in self._slots():
            for slot in range(int(start), int(end) + 1):
                owners[slot] = int(master[1])
        return owners

    def masters(self) -> list[int]:
        """Ports of the masters that own slots, lowest port first."""
        return sorted(set(self.slot_owners().values()))

    def replica_of(self, port: int) -> int | None:
        """The port of a replica of master `port` (None if it has none)."""
        for _start, _end, master, *replicas in self._slots():
            if int(master[1]) == port and replicas:
                return int(replicas[0][1])
        return None

    def channels_on(self, port: int, count: int, prefix: str = "ch") -> list[str]:
        """`count` channel names whose slot master `port` owns now."""
        owners = self.slot_owners()
        names: list[str] = []
        index = 0
        while len(names) < count:
            name = f"{prefix}{index}"
            if owners[slot_of("{" + name + "}")] == port:
                names.append(name)
            index += 1
        return names

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live node says `cluster_state:ok` and all agree on the slot map."""

        def agreed() -> bool:
            maps = set()
            for node in self.nodes:
                if not node.alive:
                    continue
                try:
                    client = node.client()
                    try:
                        info = _cmd(client, "CLUSTER", "INFO")
                        text = info.decode() if isinstance(info, bytes) else str(info)
                        if "cluster_state:ok" not in text:
                            return False
                        shape = tuple(
                            sorted(
                                (int(s), int(e), int(m[1]))
                                for s, e, m, *_ in _cluster_slots(client)
                            )
                        )
                        maps.add(shape)
                    finally:
                        client.close()
                except (redis.RedisError, OSError):
                    return False
            return len(maps) == 1

        self._wait(agreed, timeout, "the cluster to agree on cluster_state:ok")

    # -- changing --------------------------------------------------------------------------------

    def migrate_slot(self, slot: int, target: int) -> int:
        """Move `slot` with its keys to master `target` (IMPORTING/MIGRATING, MIGRATE, SETSLOT
        NODE on every master), as `redis-cli --cluster reshard` does. Returns keys moved."""
        source = self.slot_owners()[slot]
        if source == target:
            return 0
        src, dst = self.node(source).client(), self.node(target).client()
        moved = 0
        try:
            src_id, dst_id = _myid(src), _myid(dst)
            _cmd(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            _cmd(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while True:
                keys = _cmd(src, "CLUSTER", "GETKEYSINSLOT", slot, 100)
                if not keys:
                    break
                _cmd(src, "MIGRATE", "127.0.0.1", target, "", 0, 10_000, "KEYS", *keys)
                moved += len(keys)
            for port in [target, source, *(p for p in self.masters() if p not in (source, target))]:
                client = self.node(port).client()
                try:
                    _cmd(client, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
                finally:
                    client.close()
        finally:
            src.close()
            dst.close()
        self.wait_ok()
        return moved

    def wait_failover(self, port: int, timeout: float = 60.0) -> int:
        """After master `port` died: wait until a replica owns its slots and the cluster is ok
        again. Returns the new master's port."""
        before = {slot for slot, owner in self.slot_owners().items() if owner == port}
        self._wait(
            lambda: port not in self.slot_owners().values(), timeout, f"{port}'s replica to win"
        )
        self.wait_ok(timeout)
        now = self.slot_owners()
        owners = {now[slot] for slot in before}
        if len(owners) != 1:
            raise RuntimeError(f"the slots of {port} went to several masters: {owners}")
        return owners.pop()

    def kill(self, port: int) -> None:
        """SIGKILL node `port` (no shutdown, no last write to disk)."""
        node = self.node(port)
        os.kill(node.process.pid, signal.SIGKILL)
        node.process.wait(10)

    def pause(self, port: int) -> None:
        """SIGSTOP node `port`: it reads and answers nothing until `resume`."""
        os.kill(self.node(port).process.pid, signal.SIGSTOP)

    def resume(self, port: int) -> None:
        """SIGCONT node `port`."""
        os.kill(self.node(port).process.pid, signal.SIGCONT)

    def cut_replication(self, master: int, replica: int) -> None:
        """Stop `replica` and drop its link to `master`: until `resume(replica)`, what `master`
        acknowledges stays on `master` alone (the window asynchronous replication leaves)."""
        self.pause(replica)
        client = self.node(master).client()
        try:
            _cmd(client, "CLIENT", "KILL", "TYPE", "replica")
        finally:
            client.close()

    # -- helpers -------------------------------------------------------------------------------

    def _slots(self) -> list[Any]:
        for node in self.nodes:
            if node.alive:
                client = node.client()
                try:
                    return _cluster_slots(client)
                except (redis.RedisError, OSError):
                    continue
                finally:
                    client.close()
        raise RuntimeError("no node of the cluster answers")

    @staticmethod
    def _answers(node: Node) -> bool:
        if not node.alive:
            raise RuntimeError(f"redis-server on {node.address} exited: {node.directory}")
        try:
            client = node.client(socket_connect_timeout=0.2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.RedisError, OSError):
            return False

    @staticmethod
    def _wait(check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(0.05)


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, SIGTERM when the thread that started the node
    exits, so a test run that is killed (and never reaches `stop`) leaves no node running."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _cluster_slots(client: redis.Redis) -> list[Any]:
    """CLUSTER SLOTS as Redis sends it: [start, end, [host, port, id], [replica...]...]."""
    return list(_cmd(client, "CLUSTER", "SLOTS"))


def _myid(client: redis.Redis) -> str:
    reply = _cmd(client, "CLUSTER", "MYID")
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _cmd(client: Any, *args: Any) -> Any:
    return client.execute_command(*args)
