"""Clustered mode: a replicated key-value state machine on pysyncobj, served by the one Server.

Embedding::

    node = RaftNode(RaftConfig("n1", raft="127.0.0.1:7000", tcp="127.0.0.1:8080",
                               api="127.0.0.1:8081", bootstrap=True))
    await bring_up(node, node.membership)       # from its folder, or bootstrap / join
    await node.join("n2", raft=..., tcp=..., api=...)
    node.cluster_state(); node.snapshot(); await node.leave()
"""

from __future__ import annotations

from yakvs.raft.backend import RaftBackend
from yakvs.raft.config import RaftConfig
from yakvs.raft.membership import Membership, MembershipError
from yakvs.raft.node import RaftNode, StartupError
from yakvs.raft.startup import bring_up

__all__ = [
    "Membership",
    "MembershipError",
    "RaftBackend",
    "RaftConfig",
    "RaftNode",
    "StartupError",
    "bring_up",
]
