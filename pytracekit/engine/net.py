"""Attach BPF programs to network interfaces through pyroute2 (tc clsact, XDP).

BCC loads the program (`Program.load_function`); this module puts it on an
interface over netlink and remembers exactly what it added, so `detach()`
removes that and only that: a clsact qdisc it created (which takes its filters
with it), or only its own filters on a clsact someone else owns, and an XDP
program only while it is still ours.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Any

from ..errors import NotFoundError, PytracekitError, UsageError

INGRESS, EGRESS = "ingress", "egress"
# clsact's two hooks, as `tc filter add ... ingress|egress` names them
TC_PARENTS = {INGRESS: "ffff:fff2", EGRESS: "ffff:fff3"}
# An unusual preference so ours never collides with filters people add by hand
# (tc picks 49152 and counts down when no prio is given).
FILTER_PRIO = 0x7A3B
FILTER_HANDLE = 1
XDP_FLAGS_UPDATE_IF_NOEXIST = 1
XDP_FLAGS_SKB_MODE = 2
ETH_P_ALL = 0x0003


def prog_id(fd: int) -> int:
    """The kernel's id of a loaded BPF program, from its fd."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("prog_id:"):
                return int(line.split()[1])
    return 0


@dataclass
class Interface:
    name: str
    index: int


@dataclass
class _Added:
    kind: str                      # "clsact" | "filter" | "xdp"
    iface: Interface
    parent: str = ""
    prog_id: int = 0
    xdp_flags: int = 0


@dataclass
class NetAttacher:
    """Interfaces of one network namespace (None: ours) and what we put on them."""

    netns: str | None = None
    added: list[_Added] = field(default_factory=list)
    _ipr: Any = None

    def _ip(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute
            if self.netns is not None:
                from pyroute2 import netns as nsmod
                if self.netns not in nsmod.listnetns():
                    raise NotFoundError(f"no network namespace {self.netns!r} "
                                        f"(`ip netns list` shows them)")
                # pyroute2 forks a helper to open a socket in the namespace and
                # ends it with SIGTERM; with our handlers inherited (runner's
                # Stop) the helper would unwind through the tool's own cleanup:
                # it must simply die. Nothing is attached yet at this point.
                with _signals_set_to(signal.SIG_DFL):
                    self._ipr = IPRoute(netns=self.netns)
            else:
                self._ipr = IPRoute()
        return self._ipr

    # -- interfaces ---------------------------------------------------------

    def interface_names(self) -> dict[int, str]:
        return {link["index"]: link.get_attr("IFLA_IFNAME") for link in self._ip().get_links()}

    def resolve(self, names: list[str]) -> list[Interface]:
        known = self.interface_names()
        by_name = {v: k for k, v in known.items()}
        found = []
        for name in names:
            if name not in by_name:
                where = f" in network namespace {self.netns}" if self.netns else ""
                raise NotFoundError(f"no network interface {name!r}{where} "
                                    f"(interfaces: {', '.join(sorted(by_name))})")
            found.append(Interface(name, by_name[name]))
        return found

    # -- tc -----------------------------------------------------------------

    def _has_clsact(self, iface: Interface) -> bool:
        for qdisc in self._ip().get_qdiscs(index=iface.index):
            if qdisc.get_attr("TCA_KIND") == "clsact":
                return True
        return False

    def attach_tc(self, iface: Interface, fd: int, name: str, direction: str) -> None:
        """A direct-action classifier on the interface's clsact hook."""
        ip = self._ip()
        if not self._has_clsact(iface):
            _netlink(lambda: ip.tc("add", "clsact", iface.index), f"adding clsact to {iface.name}")
            self.added.append(_Added("clsact", iface))
        parent = TC_PARENTS[direction]
        _netlink(lambda: ip.tc("add-filter", "bpf", iface.index, FILTER_HANDLE, fd=fd,
                               name=filter_name(name),
                               parent=parent, prio=FILTER_PRIO, protocol=ETH_P_ALL, classid=1,
                               direct_action=True),
                 f"adding a tc {direction} filter to {iface.name}")
        self.added.append(_Added("filter", iface, parent=parent, prog_id=prog_id(fd)))

    # -- what a killed run left -----------------------------------------------

    def remove_leftovers(self, iface: Interface, xdp_names: tuple[str, ...] = ()) -> list[str]:
        """Remove what a run killed with SIGKILL (no chance to detach) left on
        the interface: tc filters at our preference whose name carries the pid
        of a process that is gone, and an XDP program named as ours that no
        process holds any more (a live run holds its programs). One line each."""
        ip = self._ip()
        notes = []
        for direction, parent in TC_PARENTS.items():
            try:
                filters = ip.get_filters(index=iface.index, parent=parent)
            except Exception:     # no clsact qdisc: nothing there
                continue
            for f in filters:
                options = f.get_attr("TCA_OPTIONS")
                owner = _filter_owner(options.get_attr("TCA_BPF_NAME") if options else None)
                if owner is None or f["info"] >> 16 != FILTER_PRIO or _pytracekit_alive(owner):
                    continue
                _netlink(lambda: ip.tc("del-filter", "bpf", iface.index, f["handle"],
                                       parent=parent, prio=FILTER_PRIO, protocol=ETH_P_ALL),
                         f"removing a leftover tc filter from {iface.name}")
                notes.append(f"removed the tc {direction} filter that pytracekit pid {owner} "
                             f"(killed) left on {iface.name}")
        attached = self.xdp_prog_id(iface)
        if attached and xdp_names:
            from ..kernel import bpfsys
            if (bpfsys.prog_name(attached) in xdp_names
                    and attached not in bpfsys.programs_held_by_processes()):
                flags = XDP_FLAGS_SKB_MODE if self._xdp_generic(iface, attached) else 0
                _netlink(lambda: ip.link("set", index=iface.index, xdp={"attrs": [
                    ("IFLA_XDP_FD", -1), ("IFLA_XDP_FLAGS", flags)]}),
                    f"removing a leftover XDP program from {iface.name}")
                notes.append(f"removed the XDP program (id {attached}) that a killed pytracekit "
                             f"left on {iface.name}")
        return notes

    def _xdp_generic(self, iface: Interface, prog_id: int) -> bool:
        """Attached in generic (skb) mode? Detaching must name the same mode."""
        xdp = self._ip().get_links(iface.index)[0].get_attr("IFLA_XDP")
        return xdp is not None and xdp.get_attr("IFLA_XDP_SKB_PROG_ID") == prog_id

    # -- XDP ----------------------------------------------------------------

    def xdp_prog_id(self, iface: Interface) -> int:
        link = self._ip().get_links(iface.index)[0]
        xdp = link.get_attr("IFLA_XDP")
        return (xdp.get_attr("IFLA_XDP_PROG_ID") or 0) if xdp is not None else 0

    def attach_xdp(self, iface: Interface, fd: int, generic: bool = False) -> None:
        flags = XDP_FLAGS_UPDATE_IF_NOEXIST | (XDP_FLAGS_SKB_MODE if generic else 0)
        ip = self._ip()
        try:
            ip.link("set", index=iface.index,
                    xdp={"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]})
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EBUSY:
                raise UsageError(f"{iface.name} already has an XDP program: pytracekit leaves "
                                 "it alone (use --tc instead)") from None
            raise _netlink_error(exc, f"attaching XDP to {iface.name}") from None
        self.added.append(_Added("xdp", iface, prog_id=prog_id(fd), xdp_flags=flags))

    # -- teardown -----------------------------------------------------------

    def detach(self) -> list[str]:
        """Remove what we added, newest first; returns problems (never raises).
        A second Ctrl-C or SIGTERM meanwhile is ignored: the tool is already
        on its way out, and must not leave half of its attachments behind."""
        problems = []
        removed_clsact = {a.iface.index for a in self.added if a.kind == "clsact"}
        with _signals_set_to(signal.SIG_IGN):
            while self.added:
                added = self.added.pop()
                try:
                    self._remove(added, removed_clsact)
                except Exception as exc:  # keep going: remove everything we can
                    problems.append(f"{added.kind} on {added.iface.name}: {exc}")
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None
        return problems

    def _remove(self, added: _Added, removed_clsact: set[int]) -> None:
        ip = self._ip()
        if added.kind == "filter":
            if added.iface.index in removed_clsact:
                return        # deleting our clsact below takes its filters along
            ip.tc("del-filter", "bpf", added.iface.index, FILTER_HANDLE, parent=added.parent,
                  prio=FILTER_PRIO, protocol=ETH_P_ALL)
        elif added.kind == "clsact":
            ip.tc("del", "clsact", added.iface.index)
        elif added.kind == "xdp":
            if self.xdp_prog_id(added.iface) == added.prog_id:  # still ours
                flags = added.xdp_flags & ~XDP_FLAGS_UPDATE_IF_NOEXIST
                ip.link("set", index=added.iface.index,
                        xdp={"attrs": [("IFLA_XDP_FD", -1), ("IFLA_XDP_FLAGS", flags)]})


@contextlib.contextmanager
def _signals_set_to(action: Any):
    """SIGINT/SIGTERM/SIGHUP handled by `action` for a moment, then restored
    (only the main thread may set handlers; elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    saved = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        signal.signal(sig, action)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


FILTER_OWNER_TAG = ":pytracekit:"


def filter_name(program: str) -> str:
    """The name a tc filter of ours carries: the program's and our pid, so that
    a later run can tell a filter whose owner was killed (remove_leftovers)."""
    return f"{program}{FILTER_OWNER_TAG}{os.getpid()}"


def _filter_owner(name: str | None) -> int | None:
    if not name or FILTER_OWNER_TAG not in name:
        return None
    pid = name.rsplit(FILTER_OWNER_TAG, 1)[1]
    return int(pid) if pid.isdigit() else None


def _pytracekit_alive(pid: int) -> bool:
    """Is `pid` a running pytracekit (not a reused pid)?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"pytracekit" in f.read()
    except OSError:
        return False


def _netlink(do, what: str) -> None:
    try:
        do()
    except Exception as exc:
        raise _netlink_error(exc, what) from None


def _netlink_error(exc: Exception, what: str) -> PytracekitError:
    code = getattr(exc, "code", None)
    reason = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
    return PytracekitError(f"{what} failed: {reason}")


def parse_ports(text: str) -> tuple[int, ...]:
    """"80,443" -> (80, 443); the -P/-L/-D port lists of the network tools."""
    ports = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise UsageError(f"bad port {part!r} in {text!r}: give numbers 1-65535 "
                             "separated by commas, e.g. 80,443")
        ports.append(int(part))
    return tuple(dict.fromkeys(ports))
