"""HTTP admin API (aiohttp) of a cluster node.

Mutating calls need ``Authorization: Bearer <secret>`` when the cluster has a secret. Membership
changes sent to a follower are forwarded to the leader's API, so any member can be named in
``--join``. Bad bodies get a 4xx JSON error, never a traceback.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from yakvs.errors import YakvsError
from yakvs.raft.config import split_hostport
from yakvs.raft.membership import Membership, MembershipError
from yakvs.raft.node import RaftNode

logger = logging.getLogger(__name__)

_NODE: web.AppKey[RaftNode] = web.AppKey("node", RaftNode)
_MEMBERSHIP: web.AppKey[Membership] = web.AppKey("membership", Membership)
_MUTATING = {"POST", "DELETE", "PUT", "PATCH"}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    node = request.app[_NODE]
    secret = node.config.secret
    if secret and request.method in _MUTATING:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {secret}".encode()):
            return _error(401, "missing or wrong bearer token")
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except MembershipError as exc:
        return _error(exc.status, exc.message)
    except YakvsError as exc:
        return _error(503, exc.message)
    except Exception:
        logger.exception("admin API %s %s failed", request.method, request.path)
        return _error(500, "internal error")


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        # RecursionError: json.loads on deeply nested arrays (found by the admin API fuzzer).
        raise MembershipError(400, "body must be a JSON object") from None
    if not isinstance(body, dict):
        raise MembershipError(400, "body must be a JSON object")
    return body


def _address(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise MembershipError(400, f"{field!r} must be a HOST:PORT string")
    try:
        host, port = split_hostport(value)
    except ValueError:
        raise MembershipError(400, f"{field!r} must be a HOST:PORT string") from None
    if not host or not 0 < port < 65536:
        raise MembershipError(400, f"{field!r} must be a HOST:PORT string")
    return value


async def join(request: web.Request) -> web.Response:
    body = await _json_body(request)
    node_id = body.get("id")
    if not isinstance(node_id, str) or not node_id or "/" in node_id:
        raise MembershipError(400, "'id' must be a non-empty string without '/'")
    raft, tcp, api = (_address(body, f) for f in ("raft", "tcp", "api"))
    clean = {"node_id": node_id, "raft": raft, "tcp": tcp, "api": api}
    return web.json_response(await request.app[_MEMBERSHIP].join(**clean))


async def remove(request: web.Request) -> web.Response:
    node_id = request.match_info["node_id"]
    return web.json_response(await request.app[_MEMBERSHIP].remove_anywhere(node_id))


async def leave(request: web.Request) -> web.Response:
    return web.json_response(await request.app[_MEMBERSHIP].leave())


async def members(request: web.Request) -> web.Response:
    node = request.app[_NODE]
    leader = node.leader_member()
    listed = [{"id": k, **v} for k, v in sorted(node.state.members().items())]
    return web.json_response({"members": listed, "leader": leader[0] if leader else None})


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[_NODE].status())


async def snapshot(request: web.Request) -> web.Response:
    applied = request.app[_NODE].snapshot()
    return web.json_response({"snapshot": "started", "applied_index": applied})


async def livez(request: web.Request) -> web.Response:
    return web.json_response({"live": True})


async def readyz(request: web.Request) -> web.Response:
    node = request.app[_NODE]
    ready = node.is_ready()
    body = {"ready": ready, "has_quorum": node.has_quorum, "leader": node.leader_raft()}
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    node = request.app[_NODE]
    sync = node.sync
    lines = [
        "# TYPE yakvs_raft_is_leader gauge", f"yakvs_raft_is_leader {int(node.is_leader)}",
        "# TYPE yakvs_raft_has_quorum gauge", f"yakvs_raft_has_quorum {int(node.has_quorum)}",
        "# TYPE yakvs_raft_ready gauge", f"yakvs_raft_ready {int(node.is_ready())}",
        "# TYPE yakvs_raft_term gauge", f"yakvs_raft_term {sync.raftCurrentTerm}",
        "# TYPE yakvs_raft_commit_index gauge", f"yakvs_raft_commit_index {sync.raftCommitIndex}",
        "# TYPE yakvs_raft_applied_index gauge",
        f"yakvs_raft_applied_index {sync.raftLastApplied}",
        "# TYPE yakvs_raft_members gauge", f"yakvs_raft_members {len(node.peers()) + 1}",
        "# TYPE yakvs_keys gauge", f"yakvs_keys {node.state.live_count()}",
        "# TYPE yakvs_raft_write_batches_total counter",
        f"yakvs_raft_write_batches_total {node.writes.batches}",
        "# TYPE yakvs_raft_writes_total counter", f"yakvs_raft_writes_total {node.writes.commands}",
        "# TYPE yakvs_raft_barriers_total counter",
        f"yakvs_raft_barriers_total {node.barrier.rounds}",
        "# TYPE yakvs_raft_reads_on_write_batches_total counter",
        f"yakvs_raft_reads_on_write_batches_total {node.barrier.rides}",
    ]
    notice = node.commit_notice
    if notice is not None:
        lines += [
            "# TYPE yakvs_raft_commit_notices_deferred_total counter",
            f"yakvs_raft_commit_notices_deferred_total {notice.deferred}",
            "# TYPE yakvs_raft_commit_notices_saved_total counter",
            f"yakvs_raft_commit_notices_saved_total {notice.saved}",
        ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def make_app(node: RaftNode, membership: Membership) -> web.Application:
    app = web.Application(middlewares=[_guard], client_max_size=64 * 1024)
    app[_NODE] = node
    app[_MEMBERSHIP] = membership
    app.router.add_post("/join", join)
    app.router.add_post("/leave", leave)
    app.router.add_delete("/members/{node_id}", remove)
    app.router.add_get("/members", members)
    app.router.add_get("/status", status)
    app.router.add_post("/snapshot", snapshot)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_api(node: RaftNode, membership: Membership) -> web.AppRunner:
    """Serve the admin API on ``node.config.api``; the caller cleans the runner up."""
    runner = web.AppRunner(make_app(node, membership), access_log=None)
    await runner.setup()
    host, port = split_hostport(node.config.api)
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
