"""One cluster node: the SyncObj lifecycle, proposals from asyncio, views of the cluster.

Membership (join/leave/remove) lives in :mod:`yakvs.raft.membership`, how a node comes up in
:mod:`yakvs.raft.startup`, its data folder in :mod:`yakvs.raft.folder`, leader-side expiry in
:mod:`yakvs.raft.expiry`, the client-facing backend in :mod:`yakvs.raft.backend`, the admin API
in :mod:`yakvs.raft.api`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf
from pysyncobj.monotonic import monotonic

from yakvs.errors import NoLeaderError, UnavailableError, UnknownOutcomeError
from yakvs.raft.batch import Barrier, WriteBatcher
from yakvs.raft.config import RaftConfig, StartupError
from yakvs.raft.crypto import AeadEncryptor
from yakvs.raft.expiry import Expirer
from yakvs.raft.folder import NodeFolder
from yakvs.raft.loop import (
    AsyncioPoller,
    CommitNotice,
    Ticker,
    TickNotifier,
    make_transport_class,
)
from yakvs.raft.state import KVState

if TYPE_CHECKING:
    from yakvs.raft.membership import Membership

logger = logging.getLogger(__name__)

__all__ = ["ROLES", "RaftNode", "StartupError", "now_ms"]

ROLES = {0: "follower", 1: "candidate", 2: "leader"}

# Failures that prove the command never entered the log: safe to retry.
_NOT_SENT = (FAIL_REASON.MISSING_LEADER, FAIL_REASON.NOT_LEADER)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RaftNode:
    """A pysyncobj node driven from the running asyncio loop (build and use it in that loop)."""

    def __init__(self, config: RaftConfig) -> None:
        self.config = config
        self.state = KVState()
        self.raft_addr = config.raft
        self.writes = WriteBatcher(self._propose_batch)
        self.barrier = Barrier(self._propose_barrier, self.writes)
        self.left = False
        # Set once the client port listens (the CLI knows when); /readyz waits for it.
        self.serving = False
        self.on_left: Callable[[], None] | None = None
        self._sync: SyncObj | None = None
        self._ticker: Ticker | None = None
        self._poller: AsyncioPoller | None = None
        self.commit_notice: CommitNotice | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._expirer = Expirer(self.state, self.writes)
        self.folder = NodeFolder(config.node_dir)
        self._saved_peers: list[str] | None = None
        self._conf: SyncObjConf | None = None
        self._membership: Membership | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def has_data(self) -> bool:
        return self.folder.has_data()

    def load_meta(self) -> dict[str, Any]:
        return self.folder.read_meta(self.config.node_id)

    def start_sync(self, peers: list[str], hold_elections: bool = False) -> None:
        """Build the SyncObj (binds the raft port) with ``peers`` as the initial configuration.

        ``hold_elections``: a joiner not yet admitted must not campaign: each failed election
        raises its term, and a term above the leader's makes the leader step down once the
        joiner is admitted. :meth:`release_elections` restores the timeouts.
        """
        cfg = self.config
        self.folder.lock()
        self.folder.remove_partial()
        loop = asyncio.get_running_loop()
        self._ticker = Ticker(loop, self._tick)
        self._poller = AsyncioPoller(loop, self._ticker.request)
        conf = SyncObjConf(
            autoTick=False,
            # Sent at once; yakvs does the batching (batch.py).
            appendEntriesUseBatch=False,
            # Bigger than any batch entry so pysyncobj never takes its chunked-transmission path.
            appendEntriesBatchSizeBytes=1 << 23,
            # Bind exactly the raft address: pysyncobj would otherwise bind 0.0.0.0.
            bindAddress=cfg.raft,
            maxBindRetries=1,
            # Not pysyncobj's password (Fernet, slow): the AES-GCM encryptor is swapped in
            # by the transport class below.
            password=None,
            journalFile=self.folder.journal_file,
            fullDumpFile=self.folder.dump_file,
            dynamicMembershipChange=True,
            connectionRetryTime=1.0,
            raftMinTimeout=cfg.election_timeout[0],
            raftMaxTimeout=cfg.election_timeout[1],
            leaderFallbackTimeout=max(2.0, cfg.election_timeout[1] * 2),
            # Fail fast with MISSING_LEADER (never sent, safe to retry) instead of queueing.
            commandsWaitLeader=False,
            logCompactionMinEntries=cfg.compaction_entries,
            onStateChanged=self._on_state_changed,
        )
        self._conf = conf
        try:
            self._sync = SyncObj(
                cfg.raft,
                [p for p in peers if p != cfg.raft],
                conf=conf,
                consumers=[self.state],
                transportClass=make_transport_class(
                    self._poller, AeadEncryptor(cfg.secret) if cfg.secret else None),
            )
        except Exception as exc:
            self._poller.close()
            # Mostly a port in use, but also an unreadable journal: name the exception.
            raise StartupError(f"cannot start raft on {cfg.raft}: {exc!r}") from exc
        # The loop thread proposes and ticks: a tick request replaces pysyncobj's wake-up pipe.
        self._sync._SyncObj__pipeNotifier = TickNotifier(self._ticker.request)
        self.commit_notice = CommitNotice(loop, self._sync, self._proposal_queued)
        if hold_elections:
            # pysyncobj validated the conf already and reads these on every new deadline;
            # the first deadline was drawn in its constructor, so push it too (private).
            conf.raftMinTimeout, conf.raftMaxTimeout = 1e9, 1e9 + 1
            self._sync._SyncObj__raftElectionDeadline = monotonic() + 1e9
        self._ticker.start()
        self._tasks.append(asyncio.ensure_future(self._housekeeping()))
        logger.info("raft node %s on %s, peers %s", cfg.node_id, cfg.raft, peers)

    def background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` until the node closes."""
        self._tasks.append(asyncio.ensure_future(coro))

    def release_elections(self) -> None:
        assert self._conf is not None
        self._conf.raftMinTimeout, self._conf.raftMaxTimeout = self.config.election_timeout

    def lock_folder(self) -> None:
        self.folder.lock()

    def save_meta(self) -> None:
        cfg = self.config
        peers = sorted(self.peers())
        self.folder.write_meta({"id": cfg.node_id, "raft": cfg.raft, "tcp": cfg.tcp,
                                "api": cfg.api, "peers": peers})
        self._saved_peers = peers

    def mark_left(self) -> None:
        if self.left:
            return
        self.left = True
        self.folder.mark_left()
        self.writes.fail_pending(UnavailableError("this node left the cluster"))
        if self.on_left is not None:
            # A moment for the admin API to answer the /leave that brought us here.
            asyncio.get_running_loop().call_later(0.3, self.on_left)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._ticker is not None:
            self._ticker.stop()
        if self.commit_notice is not None:
            self.commit_notice.close()
        if self._sync is not None:
            if self.has_data() and not self.left:
                self.save_meta()
            self._sync.destroy()
            self._sync = None
        if self._poller is not None:
            self._poller.close()
        self.folder.unlock()

    @property
    def sync(self) -> SyncObj:
        if self._sync is None:
            raise UnavailableError("raft node not started")
        return self._sync

    def _on_state_changed(self, old: int, new: int) -> None:
        logger.info("raft role %s -> %s (term %s)", ROLES.get(old), ROLES.get(new),
                    self._sync.raftCurrentTerm if self._sync is not None else "?")

    def _proposal_queued(self) -> bool:
        return self.writes.waiting() or self.barrier.waiting()

    def _tick(self) -> None:
        sync = self._sync
        if sync is None:
            return
        sync.doTick(0)
        if self._saved_peers is not None and not self.left:
            # pysyncobj changes its configuration when a membership entry is *appended*, but
            # on restart re-applies only up to a commit index it saves once a second. Started
            # with a stale, smaller peer list, a node elected itself alone and split the
            # cluster: so the list is saved in the very tick it changes.
            peers = sorted(n.address for n in sync.otherNodes)
            if peers != self._saved_peers:
                self.save_meta()

    async def _housekeeping(self) -> None:
        """Leader-only expiry proposals every 100 ms; stop once removed from the cluster."""
        while True:
            await asyncio.sleep(0.1)
            try:
                if self.is_leader and self.has_quorum and not self.left:
                    self._expirer.propose(now_ms())
                if self._was_removed():
                    logger.warning("this node was removed from the cluster: stopping")
                    self.mark_left()
            except Exception:
                logger.exception("raft housekeeping failed")

    def _was_removed(self) -> bool:
        # Only once caught up: a joiner replaying an old removal of its id is not removed.
        node_id = self.config.node_id
        return (not self.left and self.has_data() and self.sync.isReady()
                and self.state.is_removed(node_id) and node_id not in self.state.members())

    # -- embedding API: the original's Raft operations --------------------------------------

    @property
    def membership(self) -> Membership:
        if self._membership is None:
            from yakvs.raft.membership import Membership  # it imports this module

            self._membership = Membership(self)
        return self._membership

    async def join(self, node_id: str, raft: str, tcp: str, api: str) -> dict[str, Any]:
        """Add a node (any member may be asked: followers forward to the leader)."""
        return await self.membership.join(node_id, raft, tcp, api)

    async def remove(self, node_id: str) -> dict[str, Any]:
        return await self.membership.remove_anywhere(node_id)

    async def leave(self) -> dict[str, Any]:
        """Leave the cluster (handing leadership over first when leading)."""
        return await self.membership.leave()

    def cluster_state(self) -> dict[str, Any]:
        """Members with their addresses, leader, term, commit/applied indexes, own role."""
        return self.status()

    def snapshot(self) -> int:
        """Start a log compaction (full dump); returns the applied index it will cover."""
        self.sync.forceLogCompaction()
        applied: int = self.sync.raftLastApplied
        return applied

    # -- views -------------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._sync is not None and self._sync._isLeader()

    @property
    def has_quorum(self) -> bool:
        return self._sync is not None and self._sync.hasQuorum

    def peers(self) -> list[str]:
        return [n.address for n in self.sync.otherNodes]

    def leader_raft(self) -> str | None:
        leader = self._sync._getLeader() if self._sync is not None else None
        return leader.address if leader is not None else None

    def member_by_raft(self, raft: str | None) -> tuple[str, dict[str, str]] | None:
        for node_id, member in self.state.members().items():
            if member["raft"] == raft:
                return node_id, member
        return None

    def leader_member(self) -> tuple[str, dict[str, str]] | None:
        return self.member_by_raft(self.leader_raft())

    def usable_leader(self) -> bool:
        """A leader we can reach: ourselves with a quorum, or a connected peer."""
        sync = self._sync
        if sync is None or self.left:
            return False
        leader = sync._getLeader()
        if leader is None:
            return False
        if sync._isLeader():
            return sync.hasQuorum
        return sync.isNodeConnected(leader)

    def is_ready(self) -> bool:
        return (self.serving and self._sync is not None and self.usable_leader()
                and self._sync.isReady())

    def status(self) -> dict[str, Any]:
        sync = self.sync
        st = sync.getStatus()
        leader = self.leader_member()
        members = self.state.members()
        return {
            "mode": "raft",
            "id": self.config.node_id,
            "role": ROLES.get(st["state"], str(st["state"])),
            "leader": leader[1]["tcp"] if leader else None,
            "leader_id": leader[0] if leader else None,
            "members": [{"id": k, **v} for k, v in sorted(members.items())],
            "term": sync.raftCurrentTerm,
            "commit_index": sync.raftCommitIndex,
            "applied_index": sync.raftLastApplied,
            "keys": self.state.live_count(),
            "has_quorum": sync.hasQuorum,
            "ready": self.is_ready(),
            "raft_peers": sorted(self.peers()),
            "log_len": st["log_len"],
            "left": self.left,
        }

    # -- proposals ---------------------------------------------------------------------------

    async def wait_leader(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.usable_leader():
            if self.left:
                raise UnavailableError("this node left the cluster")
            if loop.time() >= deadline:
                raise NoLeaderError()
            await asyncio.sleep(0.02)

    async def call(self, method: Callable[..., Any], *args: Any, timeout: float | None = None,
                   idempotent: bool = False) -> Any:
        """Propose one replicated call and wait until it is applied on this node.

        Raises NoLeaderError / UnavailableError when it certainly did not happen, and
        UnknownOutcomeError when it may have (never a success or a clean failure in that case).
        """
        loop = asyncio.get_running_loop()
        timeout = self.config.request_timeout if timeout is None else timeout
        deadline = loop.time() + timeout
        while True:
            await self.wait_leader(min(self.config.leader_wait, max(0.0, deadline - loop.time())))
            fut: asyncio.Future[tuple[Any, int]] = loop.create_future()

            def done(res: Any, err: int, fut: asyncio.Future[tuple[Any, int]] = fut) -> None:
                # Runs inside doTick: only hand the result over, never propose from here.
                if not fut.done():
                    fut.set_result((res, err))

            try:
                method(*args, callback=done)
            except BlockingIOError:
                pass  # pysyncobj queued the command before its wake-up pipe filled up
            assert self._ticker is not None
            self._ticker.request()
            try:
                res, err = await asyncio.wait_for(fut, max(0.001, deadline - loop.time()))
            except TimeoutError:
                if idempotent:
                    raise UnavailableError("timed out waiting for the cluster") from None
                raise UnknownOutcomeError() from None
            if err == FAIL_REASON.SUCCESS:
                return res
            if err in _NOT_SENT or idempotent:
                if loop.time() + 0.05 >= deadline:
                    raise NoLeaderError()
                await asyncio.sleep(0.05)
                continue
            if err == FAIL_REASON.DISCARDED:
                raise UnavailableError("write discarded by a leader change; not applied")
            if err in (FAIL_REASON.QUEUE_FULL, FAIL_REASON.REQUEST_DENIED):
                raise UnavailableError(f"raft refused the command (reason {err})")
            raise UnknownOutcomeError()

    async def _propose_batch(self, cmds: list[tuple[Any, ...]]) -> list[Any]:
        result: list[Any] = await self.call(self.state.apply_batch, cmds)
        return result

    async def _propose_barrier(self) -> None:
        await self.call(self.state.barrier, idempotent=True)
