"""Private networks of Linux network namespaces, for partition tests of a real cluster.

``PrivateNet`` builds, per test run, a hub namespace holding a bridge and one namespace per
member (cluster node or test client) with a veth pair into that bridge. Addresses come from a
/24 that exists only inside these namespaces, so no packet can reach or leave the machine's real
interfaces. Partitions are iptables DROP rules inside the member namespaces; packet loss is
iptables' ``statistic`` match (``tc netem`` is missing on these kernels).

The test process stays in the root namespace. ``PrivateNet.call`` runs a function in a new thread
moved into a member's namespace with setns(2): sockets opened there, threads started there and
child processes forked there all belong to that namespace. Only that thread moves (setns of a
network namespace is per thread), so pytest itself is never affected.

Needs root and ``ip``/``iptables``; :func:`unavailable_reason` says why not, for ``skipif``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import itertools
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from yakvs.testing.cluster import Cluster, NodeProc

__all__ = [
    "NsNodeProc",
    "PrivateNet",
    "cleanup_leftovers",
    "ns_cluster",
    "run_in_netns",
    "unavailable_reason",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Every namespace we create is named PREFIX<pid>-<member>: the pid keeps parallel runs apart and
# lets a later run tell a dead run's leftovers from a live run's namespaces.
PREFIX = "ykpart"
_NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_HUB = "hub"
_serial = itertools.count()


@functools.cache
def unavailable_reason() -> str | None:
    """Why namespaces cannot be built here (for ``pytest.mark.skipif``), or None.

    Root is not enough (a container without CAP_NET_ADMIN, a kernel without the statistic
    match): build a throwaway namespace with a loss rule and say what failed."""
    if os.geteuid() != 0:
        return "network namespaces and iptables need root"
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (apt-get install iproute2 iptables)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _run("ip", "netns", "add", probe)
        _run("ip", "netns", "exec", probe, "iptables", "-w", "5", "-A", "INPUT", "-m",
             "statistic", "--mode", "random", "--probability", "0.5", "-j", "DROP")
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return f"cannot build a namespace with iptables rules here: {exc}"
    finally:
        _run("ip", "netns", "del", probe, check=False)
    return None


def _run(*args: str, timeout: float = 20.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        command = " ".join(args)
        raise RuntimeError(f"{command} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _ns_pids(ns: str) -> list[int]:
    out = _run("ip", "netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _delete_ns(ns: str) -> None:
    """Kill whatever still runs in ``ns`` (only our own children can be there), then delete it;
    the veth ends and the bridge go with their namespaces."""
    for pid in _ns_pids(ns):
        if pid == os.getpid():
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _run("ip", "netns", "del", ns, check=False)


def _owner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_leftovers() -> list[str]:
    """Delete namespaces with our prefix whose creating process is gone (a run killed before
    its teardown); returns their names."""
    removed = []
    names = sorted(p.name for p in _NETNS_DIR.glob(f"{PREFIX}*")) if _NETNS_DIR.is_dir() else []
    for name in names:
        owner = name[len(PREFIX):].split("-", 1)[0]
        if owner.isdigit() and not _owner_alive(int(owner)):
            _delete_ns(name)
            removed.append(name)
    if removed:
        logger.warning("deleted leftover namespaces of dead runs: %s", removed)
    return removed


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in_netns(ns: str, fn: Callable[[], T], timeout: float | None = None) -> T:
    """``fn()`` in a new thread moved into namespace ``ns``; its result or its exception."""
    result: list[T] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            _setns(str(_NETNS_DIR / ns))
            result.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=main, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"function in {ns} still running after {timeout} s")
    if errors:
        raise errors[0]
    return result[0]


class PrivateNet:
    """A hub namespace with a bridge and one namespace per member on ``<subnet>.0/24``.

    Members get addresses ``<subnet>.1``, ``.2``, ... in the order given. Use as a context
    manager, or call :meth:`close`; an atexit hook deletes everything if neither runs.
    """

    def __init__(self, members: Sequence[str], subnet: str = "10.77.0") -> None:
        if len(set(members)) != len(members) or _HUB in members:
            raise ValueError(f"member names must be unique and not {_HUB!r}: {members}")
        cleanup_leftovers()
        self.tag = f"{PREFIX}{os.getpid()}-{next(_serial)}"
        self.subnet = subnet
        self.hub = f"{self.tag}-{_HUB}"
        self.ns: dict[str, str] = {}
        self.ip: dict[str, str] = {}
        self._created: list[str] = []
        atexit.register(self.close)
        try:
            self._add_ns(self.hub)
            _run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", self.hub, "link", "set", "br0", "up")
            for index, member in enumerate(members, start=1):
                self._add_member(member, index)
        except BaseException:
            self.close()
            raise

    def _add_ns(self, ns: str) -> None:
        _run("ip", "netns", "add", ns)
        self._created.append(ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")

    def _add_member(self, member: str, index: int) -> None:
        ns, port = f"{self.tag}-{member}", f"p{index}"
        self._add_ns(ns)
        self.ns[member], self.ip[member] = ns, f"{self.subnet}.{index}"
        # Both veth ends are born inside namespaces, so nothing ever appears in the root one.
        _run("ip", "-n", ns, "link", "add", "eth0", "type", "veth",
             "peer", "name", port, "netns", self.hub)
        _run("ip", "-n", ns, "addr", "add", f"{self.ip[member]}/24", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", self.hub, "link", "set", port, "master", "br0")
        _run("ip", "-n", self.hub, "link", "set", port, "up")

    # -- running things inside ---------------------------------------------------------------

    def call(self, member: str, fn: Callable[[], T], timeout: float | None = None) -> T:
        """``fn()`` in a thread inside ``member``'s namespace (see :func:`run_in_netns`)."""
        return run_in_netns(self.ns[member], fn, timeout)

    def exec(self, member: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside ``member``'s namespace (``ip netns exec``), output captured."""
        return _run("ip", "netns", "exec", self.ns[member], *cmd, check=check)

    def iptables(self, member: str, *rule: str) -> None:
        # -w: wait for the xtables lock, which parallel runs on the same machine may hold.
        self.exec(member, "iptables", "-w", "5", *rule)

    def rules(self, member: str) -> list[str]:
        """``iptables -S`` of the member, minus the default policies (for diagnostics)."""
        out = self.exec(member, "iptables", "-w", "5", "-S").stdout
        return [line for line in out.splitlines() if not line.startswith("-P ")]

    def reaches(self, src: str, dst: str, tries: int = 5) -> bool:
        """Whether a UDP datagram from ``src`` arrives at ``dst``: one direction only, whatever
        happens on the way back (a TCP probe could not tell a one-way cut from a two-way one)."""
        inbox = self.call(dst, lambda: _udp_inbox(self.ip[dst]))
        try:
            port = inbox.getsockname()[1]
            return self.call(src, lambda: _udp_delivered(inbox, self.ip[dst], port, tries))
        finally:
            # A socket keeps its namespace alive after `ip netns del`.
            inbox.close()

    # -- faults ------------------------------------------------------------------------------

    def cut(self, src: str, dst: str) -> None:
        """One-way cut: packets from ``src`` to ``dst`` are dropped (as they leave ``src`` and
        again as they reach ``dst``); ``dst`` can still send to ``src``."""
        self.iptables(src, "-A", "OUTPUT", "-d", self.ip[dst], "-j", "DROP")
        self.iptables(dst, "-A", "INPUT", "-s", self.ip[src], "-j", "DROP")

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every pair of members in different groups, both ways. Members named in no group
        (e.g. the test's client) keep reaching everyone."""
        sides = [list(g) for g in groups]
        for i, side in enumerate(sides):
            for other in sides[i + 1:]:
                for a in side:
                    for b in other:
                        self.cut(a, b)
                        self.cut(b, a)

    def isolate(self, member: str, peers: Iterable[str]) -> None:
        """Cut ``member`` off from ``peers`` both ways."""
        self.partition([member], list(peers))

    def lossy(self, member: str, probability: float, peers: Iterable[str]) -> None:
        """Drop each packet from ``peers`` to ``member`` with ``probability``."""
        if not 0.0 < probability <= 1.0:
            raise ValueError(f"probability must be in (0, 1]: {probability}")
        for peer in peers:
            self.iptables(member, "-A", "INPUT", "-s", self.ip[peer], "-m", "statistic",
                          "--mode", "random", "--probability", f"{probability:.4f}", "-j", "DROP")

    def heal(self) -> None:
        """Flush every rule in every member namespace: the network is whole again."""
        for member in self.ns:
            self.iptables(member, "-F")

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Delete every namespace of this net (killing anything still inside). Idempotent."""
        created, self._created = self._created, []
        for ns in reversed(created):
            _delete_ns(ns)
        atexit.unregister(self.close)

    def __enter__(self) -> PrivateNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _udp_inbox(ip: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, 0))
    sock.settimeout(0.2)
    return sock


def _udp_delivered(inbox: socket.socket, ip: str, port: int, tries: int) -> bool:
    # Several tries: the first datagram waits for ARP, and a loaded machine can be slow; a cut
    # link drops them all.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        for n in range(tries):
            # An OUTPUT DROP rule in the sender's namespace fails the send with EPERM.
            with contextlib.suppress(PermissionError):
                out.sendto(b"ping%d" % n, (ip, port))
            with contextlib.suppress(TimeoutError):
                if inbox.recv(64).startswith(b"ping"):
                    return True
    return False


class NsNodeProc(NodeProc):
    """A cluster node whose process is forked from a thread inside its namespace: the same
    command line as :class:`NodeProc` (no copy of it here), with the network of ``netns``."""

    netns: str = ""

    def start(self, bootstrap: bool = False, join: str | None = None,
              extra: list[str] | None = None) -> None:
        run_in_netns(self.netns, lambda: NodeProc.start(self, bootstrap, join, extra), 30.0)


def ns_cluster(net: PrivateNet, base_dir: Path, node_names: Sequence[str], secret: str,
               extra_args: Sequence[str] = ()) -> Cluster:
    """A :class:`Cluster` (not started) of nodes living in ``net``'s namespaces, each on its own
    address with fixed ports. Its admin and client calls must run in a member namespace, e.g.
    ``net.call("client", cluster.start)``."""
    cluster = Cluster(base_dir, size=0, secret=secret, extra_args=list(extra_args))
    for name in node_names:
        ip = net.ip[name]
        node = NsNodeProc(name, f"{ip}:7000", f"{ip}:8080", f"{ip}:8081", Path(base_dir),
                          secret=secret, extra_args=cluster.extra_args)
        node.netns = net.ns[name]
        cluster.nodes.append(node)
    return cluster
