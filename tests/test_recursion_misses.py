"""Events the kernel skipped a tool's probe for because another BPF program
ran on that CPU (bpf_prog_info.recursion_misses, docs/losses.md): read once in
loader.Program.loss() for every program of every tool, reported as
`missed_events` in the loss line, the JSON loss object and the metrics.

The real test makes the misses itself: funccount counts the
bpf_trace:bpf_trace_printk tracepoint while a sampling program of ours
(tests/bpf/printk_in_sample.bpf.c) calls bpf_trace_printk on its first
LIMIT samples. Each call fires the tracepoint inside our program, with the
kernel's bpf_prog_active held, so the kernel skips funccount's program and
counts one miss for it each time. Nothing else on these machines calls
bpf_trace_printk; perf, counting the same tracepoint, loses them too."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT, Tool, wait_until
from perf_oracle import SystemWideCount
from pytracekit.fleet.metrics import loss_families
from pytracekit.model import LossReport
from pytracekit.render.text import loss_line

from test_fleet_metrics import _exposed

LIMIT = 20
PRINTK_IN_SAMPLE = ROOT / "tests" / "bpf" / "printk_in_sample.bpf.c"
PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK = 1, 0


def test_misses_are_named_in_the_loss_line_json_and_metrics_and_zero_adds_nothing():
    assert loss_line(LossReport()) == ""
    assert loss_line(LossReport(missed_events=3)) == (
        "WARNING: 3 events missed: the kernel skipped the probe while another BPF program "
        "ran on the CPU")
    assert list(LossReport(missed_events=3).as_dict())[-1] == "missed_events"
    assert (LossReport(missed_events=3) + LossReport(missed_events=4)).missed_events == 7
    families, _ = _exposed(*loss_families({"funccount": LossReport(missed_events=5)}))
    assert families["pytracekit_missed_events"].type == "counter"
    assert families["pytracekit_missed_events"].samples[0].value == 5


class PrintkInSample:
    """Our sampling program on a busy process of its own, until it fired LIMIT times."""

    def __enter__(self):
        from pytracekit.engine.loader import Program
        self.busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        self.prog = Program.from_text("printk_in_sample", PRINTK_IN_SAMPLE.read_text(),
                                      defines={"LIMIT": LIMIT})
        self.prog.attach_perf_event(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK,
                                    "printk_in_sample", sample_period=1_000_000,
                                    pid=self.busy.pid)
        return self

    @property
    def fired(self) -> int:
        return self.prog["fired"][0].value

    def __exit__(self, *exc):
        self.prog.close()
        self.busy.kill()
        self.busy.wait()


@pytest.mark.root
def test_a_tool_reports_the_events_the_kernel_skipped_its_probe_for(tmp_path):
    perf = SystemWideCount([("bpf_trace:bpf_trace_printk", "common_pid >= 0")], tmp_path)
    try:
        with Tool("funccount", "--json", "t:bpf_trace:bpf_trace_printk") as tool:
            with PrintkInSample() as trigger:
                assert wait_until(lambda: trigger.fired == LIMIT, timeout=60), trigger.fired
                fired = trigger.fired
            out, err = tool.stop()
    finally:
        [perf_seen] = perf.stop()
    assert tool.returncode == 0, err
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o for o in objects if o["type"] != "loss"] == [], out   # the probe never ran
    [loss] = [o for o in objects if o["type"] == "loss"]
    assert fired == LIMIT and loss["missed_events"] == LIMIT, (loss, err)
    assert (f"WARNING: {LIMIT} events missed: the kernel skipped the probe while another "
            "BPF program ran on the CPU") in err
    # trace_call_bpf returning 0 drops the event for perf as well: a skipped
    # tracepoint event is one no perf user of the tracepoint sees either
    assert perf_seen == 0
