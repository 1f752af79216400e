"""``yakvs-raft``: one node of a yakvs cluster. Parses flags into a RaftConfig and runs it."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from yakvs.cli._common import (
    CONTEXT_SETTINGS,
    EXIT_UNAVAILABLE,
    HOST_PORT,
    log_level_option,
    setup_logging,
    version_option,
)
from yakvs.errors import YakvsError
from yakvs.protocol import Consistency
from yakvs.raft.api import start_api
from yakvs.raft.backend import RaftBackend
from yakvs.raft.config import RaftConfig, StartupError, is_loopback
from yakvs.raft.node import RaftNode
from yakvs.raft.startup import bring_up
from yakvs.server import Server, ServerConfig, install_uvloop

logger = logging.getLogger(__name__)


def _fmt(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_exposure(secret: str | None, hosts: list[str]) -> None:
    """Without a secret, anyone reaching the raft port can run code (pysyncobj unpickles what
    it receives): refuse any address that is not loopback."""
    if secret:
        return
    exposed = [h for h in hosts if not is_loopback(h)]
    if exposed:
        raise StartupError(
            f"refusing to bind {', '.join(exposed)} without --secret / YAKVS_SECRET: "
            "raft traffic is unpickled, so an open raft port is remote code execution"
        )
    logger.warning("no cluster secret: serving on loopback addresses only")


async def serve(config: RaftConfig) -> None:
    """Run one node until SIGTERM/SIGINT or until it leaves the cluster."""
    node = RaftNode(config)
    membership = node.membership
    try:
        runner = await start_api(node, membership)
    except OSError as exc:
        raise StartupError(f"cannot bind admin API {config.api}: {exc.strerror or exc}") from exc
    try:
        await bring_up(node, membership)
        host, port = config.tcp.rsplit(":", 1)
        server = Server(
            ServerConfig(host=host.strip("[]"), port=int(port),
                         read_consistency=config.read_consistency),
            RaftBackend(node),
        )
        node.on_left = server.request_exit
        watcher = asyncio.ensure_future(_mark_serving(node, server))
        try:
            await server.serve()
        except OSError as exc:
            raise StartupError(f"cannot bind {config.tcp}: {exc.strerror or exc}") from exc
        finally:
            watcher.cancel()
    finally:
        await node.close()
        await runner.cleanup()


async def _mark_serving(node: RaftNode, server: Server) -> None:
    # /readyz must not say 200 before clients can connect; Server.serve() gives no hook.
    while not server.started:
        await asyncio.sleep(0.01)
    node.serving = True


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--id", "-id", "node_id", envvar="YAKVS_ID", required=True,
              help="Node id (unique in the cluster).")
@click.option("--raft", "-raft", type=HOST_PORT, required=True, help="Raft peer address.")
@click.option("--tcp", "-tcp", type=HOST_PORT, default="127.0.0.1:8080", help="Client address.")
@click.option("--api", "-api", type=HOST_PORT, default="127.0.0.1:8081", help="Admin HTTP API.")
@click.option("--dir", "-dir", "data_dir", envvar="YAKVS_DIR", default="raft-data",
              type=click.Path(file_okay=False), help="Data folder (one sub-folder per node id).")
@click.option("--bootstrap", "-bootstrap", is_flag=True, help="Start a new cluster.")
@click.option("--join", "-join", type=HOST_PORT, default=None,
              help="Join through the admin API (H:P) of any member.")
@click.option("--join-timeout", type=click.FloatRange(min=0.0), default=60.0, show_default=True,
              help="Seconds to keep retrying --join (seed not up yet, no leader, busy) before "
                   "giving up; also bounds a --bootstrap node's first election (10 s at least).")
@click.option("--secret", default=None, show_default=False,
              help="Cluster secret: raft encryption password and admin API bearer token.")
@click.option("--read-consistency", "-read-consistency",
              type=click.Choice([c.value for c in Consistency], case_sensitive=False),
              default=Consistency.LINEARIZABLE.value, help="Default consistency of reads.")
@click.option("--request-timeout", type=click.FloatRange(0.1), default=4.0,
              help="Seconds before a write's outcome is reported unknown.")
@log_level_option()
@version_option()
def main(node_id: str, raft: tuple[str, int], tcp: tuple[str, int], api: tuple[str, int],
         data_dir: str, bootstrap: bool, join: tuple[str, int] | None, join_timeout: float,
         secret: str | None, read_consistency: str, request_timeout: float,
         log_level: str) -> None:
    """Run one node of a yakvs cluster (Raft via pysyncobj)."""
    setup_logging(log_level)
    if bootstrap and join:
        raise click.UsageError("give --bootstrap or --join, not both")
    if not node_id or "/" in node_id or node_id in (".", ".."):
        raise click.BadParameter("must be a plain name", param_hint="--id")
    config = RaftConfig(
        node_id=node_id, raft=_fmt(raft), tcp=_fmt(tcp), api=_fmt(api),
        data_dir=Path(data_dir), bootstrap=bootstrap,
        join=_fmt(join) if join else None, join_timeout=join_timeout, secret=secret or None,
        read_consistency=Consistency(read_consistency.lower()),
        request_timeout=request_timeout,
    )
    try:
        check_exposure(config.secret, [raft[0], tcp[0], api[0]])
        install_uvloop()
        asyncio.run(serve(config))
    except (StartupError, YakvsError, OSError) as exc:
        click.echo(f"yakvs-raft: cannot start: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
