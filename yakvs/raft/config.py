"""Typed configuration of one cluster node; the CLI builds it and does nothing else."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from yakvs.protocol import Consistency


@dataclass
class RaftConfig:
    # Stable name of this node in the cluster (also the name of its data sub-folder).
    node_id: str
    # Raft peer address H:P; pysyncobj uses it as the node's identity, so it must not change.
    raft: str
    # Client (JSON lines) address H:P served by yakvs.server.Server.
    tcp: str
    # HTTP admin API address H:P.
    api: str
    # Parent data folder; this node keeps its files in <data_dir>/<node_id>/.
    data_dir: Path = Path("raft-data")
    # Start a new one-node cluster (ignored once the node has data).
    bootstrap: bool = False
    # API address of any member to join through (ignored once the node has data).
    join: str | None = None
    # Cluster secret: pysyncobj's password and the admin API's bearer token.
    secret: str | None = None
    # Default read consistency when a request does not ask for one.
    read_consistency: Consistency = Consistency.LINEARIZABLE
    # Seconds a write or barrier may take before its outcome is reported unknown; below the
    # clients' default request timeout (5 s) so they get the answer rather than a timeout.
    request_timeout: float = 4.0
    # Seconds a starting node keeps trying to join (or, bootstrapping, to elect itself and
    # register) before it gives up: under load, or started before its seed, it must be patient.
    join_timeout: float = 60.0
    # Seconds to wait for a leader before answering NO_LEADER.
    leader_wait: float = 2.0
    # Raft election timeout range (seconds); failover time is bounded by the upper end.
    election_timeout: tuple[float, float] = (0.4, 1.0)
    # Journal entries before pysyncobj compacts them into a full dump.
    compaction_entries: int = 20000

    @property
    def node_dir(self) -> Path:
        return self.data_dir / self.node_id


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"; binding there is safe without a secret."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_hostport(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)
