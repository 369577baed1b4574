"""solisten: listen() calls on IPv4/IPv6 sockets with their backlog (BCC's columns).

From syscalls:sys_enter_listen/sys_exit_listen and the socket found through
the caller's fd table (no kprobes); see bpf/solisten.bpf.c.
"""
from __future__ import annotations

import socket
import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..families import tcp

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("solisten")   # struct event in bpf/solisten.bpf.c


def protocol(kind: int, family: int) -> str:
    name = {socket.SOCK_STREAM: "TCP", socket.SOCK_DGRAM: "UDP"}.get(kind, "UNK")
    return name + ("v6" if family == socket.AF_INET6 else "v4")


def start(*, pid: int = 0, netns: int = 0, family: int = 0,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    prog = tcp.load("solisten", {"FILTER_PID": pid or 0, "FILTER_NETNS": netns},
                    buffer_pages=buffer_pages, family=family)
    return stream.EventStream(prog, FIELDS)


def header(show_netns: bool) -> str:
    if show_netns:
        return ("%-6s %-12s %-12s %-6s %-8s %-5s %-39s" % (
            "PID", "COMM", "NETNS", "PROTO", "BACKLOG", "PORT", "ADDR")).rstrip()
    return ("%-6s %-12s %-6s %-8s %-5s %-39s" % ("PID", "COMM", "PROTO", "BACKLOG", "PORT",
                                                 "ADDR")).rstrip()


def text_formatter(show_netns: bool):
    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for (_ts, pid, _tid, netns, backlog, kind, _pad, comm, family, lport, _r, _p, laddr,
             _raddr) in rows:
            proto, addr = protocol(kind, family), tcp.address(family, laddr)
            if show_netns:
                line = "%-6d %-12.12s %-12s %-6s %-8s %-5s %-39s" % (
                    pid, stream.cstr(comm), netns, proto, backlog, lport, addr)
            else:
                line = "%-6d %-12.12s %-6s %-8s %-5s %-39s" % (
                    pid, stream.cstr(comm), proto, backlog, lport, addr)
            out.append(line.rstrip())
        return out
    return lines


def json_formatter(t0: int):
    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                 "comm": stream.cstr(comm), "netns": netns, "proto": protocol(kind, family),
                 "ip": tcp.ip_version(family), "backlog": backlog, "port": lport,
                 "addr": tcp.address(family, laddr)}
                for (ts, pid, tid, netns, backlog, kind, _pad, comm, family, lport, _r, _p,
                     laddr, _raddr) in rows]
    return objects


@click.command("solisten", context_settings={**options.TOOL_CONTEXT,
                                             "ignore_unknown_options": True})
@options.pid_option("-p")
@click.option("-n", "--netns", type=click.IntRange(1, 2**32 - 1), default=None,
              help="Only this network namespace (its inode number, as `ls -iL /proc/PID/ns/net`).")
@click.option("--show-netns", is_flag=True, help="Include the NETNS column.")
@tcp.family_options
@options.duration_option()
@event_tools.stream_options
def command(pid, netns, show_netns, ipv4, ipv6, duration, buffer_pages, out, command):
    """Trace listen()s of IPv4/IPv6 sockets: PID COMM PROTO BACKLOG PORT ADDR, one line each."""
    family = tcp.family_define(ipv4, ipv6)
    event_tools.main(pid, command,
                lambda target_pid: start(pid=target_pid, netns=netns or 0, family=family,
                                         buffer_pages=buffer_pages),
                lambda: event_tools.Printer(out, header(show_netns), text_formatter(show_netns),
                                       json_formatter(time.monotonic_ns())),
                duration=duration, message="Tracing listen ... Hit Ctrl-C to end")
