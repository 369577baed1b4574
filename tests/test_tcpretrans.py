"""tcpretrans against ground truth: one data segment is dropped on its way
into namespace B (a tc classifier, tests/bpf/drop_once.bpf.c), so the sender
retransmits it, while `perf stat -a` counts the same tracepoint for the port.

The retransmission comes from the retransmit timer's softirq, in whatever
task is current: when that is the VM agent, no tracepoint fires at all
(docs/DEVELOPING.md rule 11) and neither perf nor the tool can see it. Such
an attempt is repeated on a new port until perf saw the retransmit; then the
tool must have reported exactly what perf counted. A recursion miss (the
kernel skipping the tool's program while another BPF program runs on that
CPU, reported as missed_events) cannot make the tool see fewer than perf:
the kernel then gives the event to perf neither (docs/losses.md,
test_recursion_misses), so perf and the tool both see one event less."""
from pathlib import Path

import pytest

from conftest import ROOT, Tool, pytracekit
from netns_fixture import events_of, json_objects, veth_pair  # noqa: F401 (fixture)
from perf_oracle import SystemWideCount

ATTEMPTS = 5

DROP_ONCE = ROOT / "tests" / "bpf" / "drop_once.bpf.c"


class DropOnce:
    """Drops the first data segment to `port` arriving on the pair's B side."""

    def __init__(self, pair, port: int) -> None:
        self.pair, self.port = pair, port

    def __enter__(self):
        import bcc
        from pytracekit.engine.loader import Program
        from pytracekit.engine.net import INGRESS, NetAttacher
        self.prog = Program.from_text("drop_once", Path(DROP_ONCE).read_text(),
                                      defines={"DROP_PORT": self.port})
        self.attacher = NetAttacher(self.pair.ns_b)
        [iface] = self.attacher.resolve([self.pair.if_b])
        fn = self.prog.load_function("drop_once", bcc.BPF.SCHED_CLS)
        self.attacher.attach_tc(iface, fn.fd, fn.name, INGRESS)
        return self

    @property
    def dropped(self) -> int:
        return self.prog["dropped"][0].value

    def __exit__(self, *exc):
        assert self.attacher.detach() == []
        self.prog.close()


def retransmitted(veth_pair, first_port: int, tool_args: list[str], tmp_path):
    """One connection through DropOnce under `tcpretrans TOOL_ARGS` and perf,
    on port first_port, first_port + 1, ... until perf saw a retransmit to
    it: (port, client port, perf's count, the tool's stdout and stderr).

    perf counts only while the tool is attached and reading: it starts after
    the tool said ready and stops before the tool is stopped, so what perf
    counts, the tool had its chance to see. (perf started first and stopped
    last counted the port through the tool's start and teardown too.)"""
    for port in range(first_port, first_port + ATTEMPTS):
        attempt_dir = tmp_path / str(port)     # perf's file, new: its creation says ready
        attempt_dir.mkdir()
        with DropOnce(veth_pair, port) as drop, Tool("tcpretrans", *tool_args) as tool:
            with SystemWideCount([("tcp:tcp_retransmit_skb", f"dport == {port}")],
                                 attempt_dir) as perf:
                [client_port] = veth_pair.tcp_connections(1, port)
                [seen] = perf.stop()
            out, err = tool.stop()
            assert drop.dropped == 1
        assert tool.returncode == 0, err
        if seen:
            return port, client_port, seen, out, err
    raise AssertionError(f"no retransmit reached the tracepoint in {ATTEMPTS} attempts")


@pytest.mark.root
def test_one_dropped_segment_is_one_retransmit(veth_pair, tmp_path):
    port, client_port, seen, out, err = retransmitted(veth_pair, 9701, ["-s", "--json"],
                                                      tmp_path)
    ours = [e for e in events_of(json_objects(out, "tcpretrans")) if e["rport"] == port]
    assert len(ours) == seen, (out, err)
    for e in ours:
        assert (e["kind"], e["ip"], e["laddr"], e["lport"], e["raddr"], e["state"]) == \
            ("retransmit", 4, veth_pair.addr_a, client_port, veth_pair.addr_b, "ESTABLISHED")


@pytest.mark.root
def test_count_mode(veth_pair, tmp_path):
    port, client_port, seen, out, err = retransmitted(veth_pair, 9731, ["-c"], tmp_path)
    lines = out.strip().splitlines()
    assert lines[0].split() == ["LADDR:LPORT", "RADDR:RPORT", "RETRANSMITS"]
    assert f"[{veth_pair.addr_a}]#{client_port} <-> [{veth_pair.addr_b}]#{port} {seen}".split() \
        in [line.split() for line in lines[1:]], (out, err)


@pytest.mark.root
def test_no_drop_no_retransmit(veth_pair):
    port = 9721
    with Tool("tcpretrans", "--json") as tool:
        veth_pair.tcp_connections(2, port)
        out, _ = tool.stop()
    assert [e for e in events_of(json_objects(out, "tcpretrans")) if e["rport"] == port] == []


@pytest.mark.root
def test_loss_probes_need_kprobes_or_fentry_and_say_so():
    from pytracekit.kernel.features import fentry_available, kprobes_available
    if kprobes_available()[0] or fentry_available()[0]:
        pytest.skip("this kernel has kprobes or fentry")
    res = pytracekit("tcpretrans", "-l", "-d", "1")
    assert res.returncode == 1
    assert res.stderr.strip() == ("pytracekit tcpretrans: error: -l needs a kprobe or fentry on "
                                  "tcp_send_loss_probe (tail loss probes have no tracepoint) "
                                  "and this kernel has neither: run without -l")
    # Through fentry the program compiles and binds to the function; the kernel refuses it.
    res = pytracekit("tcpretrans", "-l", "-d", "1", env={"PYTRACEKIT_KERNEL_PROBES": "fentry"})
    assert res.returncode == 1
    assert res.stderr.strip() == ("pytracekit tcpretrans: error: cannot attach fentry to kernel "
                                  "function tcp_send_loss_probe: the kernel refused to load it "
                                  "(EPERM) although this is root")
