"""How a node comes up: from its data folder, by bootstrapping, or by joining through a member.

Starting is patient but bounded. A joiner may be started before its seed, or on a machine so
busy that the seed answers late: answers that may change with time (connection refused, timeouts,
5xx, "not the leader", an empty member list) are retried with backoff until
``RaftConfig.join_timeout``; answers that will not change (bad secret, id or address conflict)
end the start at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from yakvs.client._retry import ExponentialBackoff
from yakvs.raft.config import StartupError
from yakvs.raft.membership import Membership, MembershipError
from yakvs.raft.node import RaftNode

logger = logging.getLogger(__name__)

T = TypeVar("T")

# 421: the member asked lost leadership meanwhile; 422: the leader's probe of our raft port
# timed out (a busy machine); 502: unreachable or no answer in time; 500/503/504: no leader yet,
# or a membership change that did not commit in time (joining again is idempotent).
_RETRYABLE = frozenset({421, 422, 500, 502, 503, 504})
# Seconds one admin API call may take while joining (the seed's own membership change may
# wait for a leader and a commit); never more than what is left of join_timeout.
_ATTEMPT_TIMEOUT = 30.0


async def bring_up(node: RaftNode, membership: Membership) -> None:
    """Start ``node``: from its data folder if it has one, else bootstrap or join."""
    cfg = node.config
    node.lock_folder()
    if node.has_data():
        meta = node.load_meta()
        if cfg.bootstrap or cfg.join:
            logger.info("%s has data: ignoring --bootstrap/--join", cfg.node_dir)
        if meta.get("raft") != cfg.raft:
            raise StartupError(
                f"{cfg.node_dir} belongs to raft address {meta.get('raft')}, not {cfg.raft}")
        node.start_sync(list(meta.get("peers", [])))
        node.save_meta()  # from now on kept in step with the configuration
        await _refuse_if_removed(node)
        node.background(_refresh_own_entry(node, membership))
        return
    if cfg.bootstrap:
        await _bootstrap(node)
        return
    if not cfg.join:
        raise StartupError(f"{cfg.node_dir} has no data: give --bootstrap or --join H:P")
    await _join(node, membership, cfg.join)


async def _bootstrap(node: RaftNode) -> None:
    cfg = node.config
    # A one-node cluster elects itself within the election timeout, unless the machine is
    # too busy to tick: wait as long as a joiner would (10 s at least, as before the flag).
    patience = max(10.0, cfg.join_timeout)
    node.start_sync([])
    try:
        await node.wait_leader(patience)
        # add_member sets the same entry however often it is applied: safe to retry.
        await node.call(node.state.add_member, cfg.node_id, cfg.raft, cfg.tcp, cfg.api,
                        timeout=patience, idempotent=True)
    except Exception as exc:
        raise StartupError(f"bootstrap failed: {exc}") from exc
    node.save_meta()
    logger.info("bootstrapped a new cluster as %s", cfg.node_id)


async def _join(node: RaftNode, membership: Membership, seed: str) -> None:
    cfg = node.config
    deadline = asyncio.get_running_loop().time() + cfg.join_timeout

    async def members(timeout: float) -> list[str]:
        listed = await membership.fetch_members(seed, timeout)
        if not listed:
            # The seed's API answers before it has bootstrapped: its registry is still empty.
            raise MembershipError(503, f"{seed} lists no members yet")
        return [m["raft"] for m in listed]

    peers = await _patiently(f"join via {seed}", members, deadline, cfg.join_timeout)
    node.start_sync(peers, hold_elections=True)
    body = {"id": cfg.node_id, "raft": cfg.raft, "tcp": cfg.tcp, "api": cfg.api}

    async def post(timeout: float) -> None:
        await membership.forward("POST", seed, "/join", body, timeout=timeout)

    await _patiently(f"join via {seed}", post, deadline, cfg.join_timeout)
    node.release_elections()
    node.save_meta()
    logger.info("joined the cluster via %s", seed)


async def _patiently(what: str, attempt: Callable[[float], Awaitable[T]], deadline: float,
                     budget: float) -> T:
    """``attempt(timeout)`` until it succeeds, a refusal is final, or ``deadline`` passes; each
    failure becomes a one-line StartupError."""
    loop = asyncio.get_running_loop()
    backoff = ExponentialBackoff(base=0.2, cap=2.0)
    failures = 0
    while True:
        left = deadline - loop.time()
        try:
            return await attempt(max(0.1, min(_ATTEMPT_TIMEOUT, left)))
        except MembershipError as exc:
            if exc.status not in _RETRYABLE:
                raise StartupError(f"{what} refused: {exc.message}") from exc
            failures += 1
            left = deadline - loop.time()
            if left <= 0:
                raise StartupError(
                    f"{what} gave up after {budget:g} s ({failures} attempts; "
                    f"raise --join-timeout to wait longer): {exc.message}") from exc
            delay = min(left, backoff.compute(failures))
            log = logger.info if failures <= 3 else logger.warning
            log("%s: attempt %d failed (%s); retrying in %.1f s (%.0f s left)",
                what, failures, exc.message, delay, left)
            await asyncio.sleep(delay)


async def _refuse_if_removed(node: RaftNode, timeout: float = 10.0) -> None:
    """Refuse to come back after a removal recorded in the node's own log.

    The local log is applied on the first ticks, later on a busy machine: wait (bounded) until
    everything the journal knew to be committed is applied. Should the wait run out, the check
    is repeated by the node's housekeeping once it has caught up with the leader.
    """
    sync = node.sync
    target = sync.raftCommitIndex
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while sync.raftLastApplied < target and loop.time() < deadline:
        await asyncio.sleep(0.02)
    if node.state.is_removed(node.config.node_id):
        raise StartupError(
            f"node {node.config.node_id} was removed from its cluster; "
            f"wipe {node.config.node_dir} to join again")


async def _refresh_own_entry(node: RaftNode, membership: Membership) -> None:
    """After a restart with other --tcp/--api addresses, update the registry (redirects and
    STATUS name client addresses, so they must be current)."""
    cfg = node.config
    try:
        await node.wait_leader(max(30.0, cfg.join_timeout))
        wanted = {"raft": cfg.raft, "tcp": cfg.tcp, "api": cfg.api}
        if node.state.members().get(cfg.node_id) not in (None, wanted):
            await membership.join(cfg.node_id, cfg.raft, cfg.tcp, cfg.api)
            logger.info("updated this node's addresses in the registry")
    except Exception as exc:  # best effort: the old addresses stay until the next restart
        logger.warning("could not update this node's addresses: %s", exc)
