"""pktcount: packets and bytes per interface, direction, protocol and port.

BPF counts in the kernel as a tc classifier (clsact, ingress and egress) or an
XDP program (ingress), attached through pyroute2 (see pytracekit/engine/net.py) and
removed again on exit, Ctrl-C or SIGTERM. With --interval each report shows
what arrived since the previous one (deltas of cumulative counters, so
nothing falls between two reports).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import click

from ..engine import net, settings
from ..cli import options
from ..errors import UsageError
from ..engine.loader import Program
from ..render.output import Output
from ..engine.runner import Target, announce, install_signal_handlers
from ..families import summary
from ..families.periodic import run_periodic
from ..engine.session import ProgramSession

DRY_RUN_ARGS = ["-i", "lo"]

ETHERTYPES = {0x0800: "ipv4", 0x86DD: "ipv6", 0x0806: "arp"}
IPPROTOS = {0: "hopopt", 1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
COLUMNS = ("IFACE", "DIR", "PROTO", "PORT")


def protocol_name(ethertype: int, ipproto: int) -> str:
    l3 = ETHERTYPES.get(ethertype, f"0x{ethertype:04x}")
    if ethertype not in (0x0800, 0x86DD):
        return l3
    return f"{l3}/{IPPROTOS.get(ipproto, str(ipproto))}"


@dataclass
class PacketCounts:
    """(interface, direction, protocol, port) -> [packets, bytes]."""

    rows: dict[tuple[str, str, str, int], list[int]] = field(default_factory=dict)

    def minus(self, earlier: "PacketCounts") -> "PacketCounts":
        delta = PacketCounts()
        for key, (packets, nbytes) in self.rows.items():
            before = earlier.rows.get(key, [0, 0])
            if packets - before[0]:
                delta.rows[key] = [packets - before[0], nbytes - before[1]]
        return delta

    def ordered(self) -> list[tuple[tuple[str, str, str, int], list[int]]]:
        return sorted(self.rows.items(), key=lambda kv: (-kv[1][0], kv[0]))


def table(counts: PacketCounts) -> str:
    headers = [*COLUMNS, "PACKETS", "BYTES"]
    cells = [[iface, direction, proto, str(port) if port else "-", str(p), str(b)]
             for (iface, direction, proto, port), (p, b) in counts.ordered()]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = []
    for row in [headers] + cells:
        left = [v.ljust(w) for v, w in zip(row[:4], widths)]
        right = [v.rjust(w) for v, w in zip(row[4:], widths[4:])]
        lines.append("  ".join(left + right))
    return "\n".join(lines)


def json_objects(counts: PacketCounts, when: float) -> list[dict]:
    return [{"type": "packets", "time": round(when, 6), "interface": iface,
             "direction": direction, "protocol": proto, "port": port,
             "packets": p, "bytes": b}
            for (iface, direction, proto, port), (p, b) in counts.ordered()]


class PacketCounter(ProgramSession):
    """The reusable core: counting is on from start() until close()."""

    def __init__(self, prog: Program, attacher: net.NetAttacher, names: dict[int, str]) -> None:
        self.prog = prog
        self.attacher = attacher
        self.names = names

    def read(self) -> PacketCounts:
        counts = PacketCounts()
        for key, per_cpu in self.prog["packets"].items():
            row = (self.names.get(key.ifindex, f"if{key.ifindex}"),
                   "egress" if key.direction else "ingress",
                   protocol_name(key.ethertype, key.ipproto), key.dport)
            acc = counts.rows.setdefault(row, [0, 0])
            acc[0] += sum(v.packets for v in per_cpu)
            acc[1] += sum(v.bytes for v in per_cpu)
        return counts

    def close(self) -> list[str]:
        """Detach from the interfaces (first: they must not keep our programs), unload."""
        problems = self.attacher.detach()
        self.prog.close()
        return problems


def start(interfaces: list[str], *, xdp: bool = False, xdp_generic: bool = False,
          directions: tuple[str, ...] = (net.INGRESS, net.EGRESS), ports: tuple[int, ...] = (),
          netns: str | None = None, map_entries: int = 10240) -> PacketCounter:
    import bcc
    if not interfaces:
        raise UsageError("name at least one interface with -i IFACE")
    if xdp and directions != (net.INGRESS,) and net.EGRESS in directions:
        directions = (net.INGRESS,)      # XDP sees received packets only
    prog = Program.from_file("pktcount", defines={"PORT_FILTER": bool(ports),
                                                  "MAX_ENTRIES": map_entries})
    attacher = net.NetAttacher(netns)
    try:
        if ports:
            wanted = prog["wanted_ports"]
            for port in ports:
                wanted[wanted.Key(port)] = wanted.Leaf(1)
        functions = ({net.INGRESS: prog.load_function("xdp_ingress", bcc.BPF.XDP)} if xdp else
                     {d: prog.load_function(f"tc_{d}", bcc.BPF.SCHED_CLS) for d in directions})
        if settings.current().dry_run:
            prog.ready()                 # raises DryRunComplete: nothing attached
        found = attacher.resolve(list(dict.fromkeys(interfaces)))
        for iface in found:
            for note in attacher.remove_leftovers(iface, xdp_names=("xdp_ingress",)):
                click.echo(f"pytracekit pktcount: {note}", err=True)
        for iface in found:
            for direction, fn in functions.items():
                if xdp:
                    attacher.attach_xdp(iface, fn.fd, generic=xdp_generic)
                else:
                    attacher.attach_tc(iface, fn.fd, fn.name, direction)
        prog.ready()
        return PacketCounter(prog, attacher, attacher.interface_names())
    except BaseException:
        attacher.detach()
        prog.close()
        raise


@click.command("pktcount", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@click.option("-i", "--interface", "interfaces", multiple=True, metavar="IFACE",
              help="Count on this interface (repeatable).")
@click.option("--tc", "mode", flag_value="tc", default=True,
              help="Attach tc classifiers on a clsact qdisc (default; ingress and egress).")
@click.option("--xdp", "mode", flag_value="xdp", help="Attach an XDP program (ingress only).")
@click.option("--xdp-generic", is_flag=True, help="With --xdp: use generic (skb) XDP mode.")
@click.option("--direction", type=click.Choice(["ingress", "egress", "both"]), default="both",
              show_default=True, help="Which tc hook(s) to count on.")
@click.option("-P", "--port", "ports", metavar="PORTS",
              help="Count only TCP/UDP packets from or to these ports (comma-separated).")
@click.option("--netns", metavar="NAME",
              help="The interfaces live in this named network namespace (ip netns).")
@options.duration_option("-d")
@options.interval_option()
@options.output_options()
@options.standard
@options.command_argument
def command(interfaces, mode, xdp_generic, direction, ports, netns, duration, interval,
            out, command):
    """Count packets and bytes per interface, direction, protocol and port.

    \b
    examples:
      pytracekit pktcount -i eth0                 # until Ctrl-C
      pytracekit pktcount -i eth0 -P 53,443 --interval 1
      pytracekit pktcount -i veth0 --xdp -d 10 --json
    """
    from ..errors import PytracekitError
    wanted_ports = net.parse_ports(ports) if ports else ()
    directions = (net.INGRESS, net.EGRESS) if direction == "both" else (direction,)
    if mode == "xdp" and direction == "egress":
        raise UsageError("XDP sees received packets only: use --tc for --direction egress")
    interval, count, command = summary.interval_and_count(command, interval, None)
    target = Target.from_options(None, command)
    install_signal_handlers()      # a SIGTERM during attach must still detach
    counter = None
    try:
        counter = start(list(interfaces), xdp=mode == "xdp", xdp_generic=xdp_generic,
                        directions=directions, ports=wanted_ports, netns=netns)
        where = ", ".join(interfaces)
        announce(f"Counting packets on {where} ({mode})... Hit Ctrl-C to end.")
        last = PacketCounts()

        def report() -> None:
            nonlocal last
            now = counter.read()
            emit(now.minus(last), out, interval is not None)
            last = now
        run_periodic(target, duration=duration, interval=interval, count=count,
                     report=lambda _final: report())
        out.loss(counter.loss())
    finally:
        if counter is not None:
            problems = counter.close()
            if problems:
                raise PytracekitError("could not remove everything pktcount added: "
                                      + "; ".join(problems))
        target.finish()


def emit(counts: PacketCounts, out: Output, stamped: bool) -> None:
    now = time.time()
    text = [table(counts)]
    if stamped:
        text = [time.strftime("%H:%M:%S"), *text, ""]
    out.emit(text=text, json=lambda: json_objects(counts, now))
