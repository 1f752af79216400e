"""Membership changes on the leader: join, remove, leave; one change at a time.

A member is both a pysyncobj configuration entry (its raft address) and a registry entry in the
replicated state (id -> raft, tcp, api). The configuration changes first, then the registry, so a
retried join finds the half-done case and completes it: joining is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import aiohttp
from pysyncobj import FAIL_REASON

from yakvs.raft.config import split_hostport
from yakvs.raft.node import RaftNode

logger = logging.getLogger(__name__)

# Seconds an admin call waits for a usable leader before answering 503. Longer than a client
# write's wait (RaftConfig.leader_wait): an operator's or a joiner's call can sit out an
# election on a busy machine, and stays below forward()'s 20 s so a forwarded call still answers.
ADMIN_LEADER_WAIT = 10.0


class MembershipError(Exception):
    """A refused membership change; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def probe(addr: str, timeout: float = 1.0) -> None:
    """Refuse a raft address nobody listens on before it enters the configuration."""
    try:
        host, port = split_hostport(addr)
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, ValueError, TimeoutError) as exc:
        raise MembershipError(422, f"raft address {addr} is unreachable: {exc}") from exc
    writer.close()


class Membership:
    """Leader-side membership operations plus the HTTP calls a node makes to other members."""

    def __init__(self, node: RaftNode) -> None:
        self.node = node
        self._lock = asyncio.Lock()

    def _require_leader(self) -> None:
        if not self.node.is_leader:
            raise MembershipError(421, "not the leader")

    async def _change_config(self, action: str, raft: str, timeout: float = 10.0) -> None:
        """addNodeToCluster / removeNodeFromCluster, retried while a previous change commits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sync = self.node.sync
        method = sync.addNodeToCluster if action == "add" else sync.removeNodeFromCluster
        while True:
            fut: asyncio.Future[int] = loop.create_future()

            def done(_res: Any, err: int, fut: asyncio.Future[int] = fut) -> None:
                if not fut.done():
                    fut.set_result(err)

            method(raft, callback=done)
            try:
                err = await asyncio.wait_for(fut, max(0.01, deadline - loop.time()))
            except TimeoutError:
                raise MembershipError(504, f"membership change for {raft} timed out") from None
            if err == FAIL_REASON.SUCCESS:
                return
            if err != FAIL_REASON.REQUEST_DENIED or loop.time() > deadline:
                raise MembershipError(503, f"membership change for {raft} failed (reason {err})")
            await asyncio.sleep(0.1)  # the previous change (or the leader's no-op) is not committed

    async def _on_leader(self, method: str, path: str,
                         body: dict[str, Any] | None) -> dict[str, Any] | None:
        """None when this node leads; otherwise the leader's API answer to the same call."""
        node = self.node
        if not node.is_leader:
            await node.wait_leader(max(node.config.leader_wait, ADMIN_LEADER_WAIT))
        if node.is_leader:
            return None
        leader = node.leader_member()
        if leader is None:
            raise MembershipError(503, "no leader")
        return await self.forward(method, leader[1]["api"], path, body)

    async def join(self, node_id: str, raft: str, tcp: str, api: str) -> dict[str, Any]:
        """Add a node, on whichever member this runs: followers forward to the leader."""
        body = {"id": node_id, "raft": raft, "tcp": tcp, "api": api}
        forwarded = await self._on_leader("POST", "/join", body)
        return forwarded if forwarded is not None else await self.add(node_id, raft, tcp, api)

    async def remove_anywhere(self, node_id: str) -> dict[str, Any]:
        forwarded = await self._on_leader("DELETE", f"/members/{node_id}", None)
        return forwarded if forwarded is not None else await self.remove(node_id)

    async def add(self, node_id: str, raft: str, tcp: str, api: str) -> dict[str, Any]:
        self._require_leader()
        async with self._lock:
            node = self.node
            members = node.state.members()
            configured = set(node.peers()) | {node.raft_addr}
            for other_id, m in members.items():
                if m["raft"] == raft and other_id != node_id:
                    raise MembershipError(409, f"raft address {raft} belongs to {other_id}")
            current = members.get(node_id)
            if current is not None and current["raft"] != raft:
                raise MembershipError(
                    409, f"{node_id} is a member with raft address {current['raft']}")
            if raft not in configured:
                await probe(raft)
                await self._change_config("add", raft)
                logger.info("added %s (%s) to the raft configuration", node_id, raft)
            if current != {"raft": raft, "tcp": tcp, "api": api}:
                await node.call(node.state.add_member, node_id, raft, tcp, api)
            return {"joined": node_id, "already_member": current is not None}

    async def remove(self, node_id: str) -> dict[str, Any]:
        self._require_leader()
        async with self._lock:
            node = self.node
            if node_id == node.config.node_id:
                raise MembershipError(409, "the leader cannot remove itself: POST /leave to it")
            member = node.state.members().get(node_id)
            if member is None:
                raise MembershipError(404, f"no member {node_id}")
            # Registry first: the removed node is still in the configuration, so it learns of
            # its removal from the log and shuts itself down (see RaftNode._housekeeping).
            await node.call(node.state.remove_member, node_id)
            if member["raft"] in set(node.peers()):
                await self._let_it_learn(member["raft"])
                await self._change_config("remove", member["raft"])
            logger.info("removed %s (%s)", node_id, member["raft"])
            return {"removed": node_id}

    async def _let_it_learn(self, raft: str, timeout: float = 1.0) -> None:
        """Wait (bounded: it may be down) until ``raft`` has acknowledged a barrier proposed
        after its removal entry committed: the message carrying the barrier also carried the
        commit index. Dropping the connection earlier can reset it with that news unread."""
        node = self.node
        await node.call(node.state.barrier, idempotent=True)
        target = node.sync.raftCommitIndex
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if node.sync.getStatus().get(f"match_idx_server_{raft}", 0) >= target:
                return
            await asyncio.sleep(0.02)
        logger.info("%s did not acknowledge its removal; removing it anyway", raft)

    async def leave(self) -> dict[str, Any]:
        """Leave the cluster: hand leadership over first, then ask the leader to remove us."""
        node = self.node
        if not node.peers():
            raise MembershipError(409, "the last member cannot leave")
        if node.is_leader:
            await self._transfer_leadership()
        await node.wait_leader(max(node.config.leader_wait, ADMIN_LEADER_WAIT))
        leader = node.leader_member()
        if leader is None:
            raise MembershipError(503, "leader unknown")
        await self.forward("DELETE", leader[1]["api"], f"/members/{node.config.node_id}")
        node.mark_left()
        return {"left": node.config.node_id}

    async def _transfer_leadership(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while self.node.is_leader:
            if loop.time() > deadline:
                raise MembershipError(503, "could not hand leadership over")
            self.node.sync.transferLeadership(callback=lambda _r, _e: None)
            for _ in range(20):
                await asyncio.sleep(0.05)
                if not self.node.is_leader:
                    break

    # -- HTTP to other members ---------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        secret = self.node.config.secret
        return {"Authorization": f"Bearer {secret}"} if secret else {}

    async def forward(self, method: str, api: str, path: str,
                      body: dict[str, Any] | None = None,
                      timeout: float = 20.0) -> dict[str, Any]:
        """Call another member's admin API; its 4xx/5xx become a MembershipError, and no
        answer (refused, reset, timed out, not JSON) a 502."""
        url = f"http://{api}{path}"
        limit = aiohttp.ClientTimeout(total=timeout)
        try:
            async with aiohttp.ClientSession(timeout=limit) as session:
                async with session.request(method, url, json=body, headers=self._headers()) as r:
                    data = await r.json(content_type=None)
                    if r.status >= 400:
                        error = data.get("error", data) if isinstance(data, dict) else data
                        raise MembershipError(r.status, str(error))
                    if not isinstance(data, dict):
                        raise ValueError(f"expected a JSON object, got {data!r:.80}")
                    return data
        except aiohttp.ClientConnectorError as exc:
            err = exc.os_error
            reason = os.strerror(err.errno) if err.errno else str(err)
            raise MembershipError(502, f"cannot reach {api}: {reason}") from exc
        except TimeoutError as exc:
            raise MembershipError(502, f"cannot reach {api}: no answer in {timeout:g} s") from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise MembershipError(502, f"cannot reach {api}: {exc}") from exc

    async def fetch_members(self, api: str, timeout: float = 20.0) -> list[dict[str, str]]:
        data = await self.forward("GET", api, "/members", timeout=timeout)
        members = data.get("members")
        if not isinstance(members, list):
            raise MembershipError(502, f"{api} answered /members without a member list")
        return members

