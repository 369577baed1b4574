"""stat: exact tracepoint counts for a command and a pid, perf counters, layout."""
import json
import os
import re
import subprocess
import shutil
import sys
from pathlib import Path

import pytest

from conftest import ROOT, Tool, pytracekit
from whohelpers import GatedWorkload, as_nobody, validate_json_lines

from pytracekit.errors import NotFoundError, SpecError
from pytracekit.kernel.tracefs import parse_format
from pytracekit.probes.perf_events import parse
from pytracekit.render import perfstat
from pytracekit.probes.tpfilter import compile_filter, ftrace_filter

OPENAT = "syscalls:sys_enter_openat"


def _counters(objs):
    return {o["event"]: o for o in objs if o["type"] == "counter"}


def _stat_json(*args):
    res = pytracekit("stat", "--json", *args)
    assert res.returncode == 0, res.stderr
    return _counters(validate_json_lines("stat", res.stdout))


@pytest.mark.root
def test_command_counts_its_opens_plus_only_the_loaders(workload, tmp_path):
    marker = str(tmp_path / "marker")
    loader_only = _stat_json("-e", OPENAT, "--", workload, "open", marker, "0")[OPENAT]["value"]
    with_opens = _stat_json("-e", OPENAT, "--", workload, "open", marker, "7")[OPENAT]["value"]
    assert 0 < loader_only <= 10          # ld.so.cache, libc ...: a handful
    assert with_opens - loader_only == 7


@pytest.mark.root
def test_elapsed_covers_the_commands_cpu_time(workload):
    """A single-threaded command cannot use more CPU time than wall time."""
    res = pytracekit("stat", "--json", "-e", "task-clock", "--", workload, "spin", "0.1")
    objs = validate_json_lines("stat", res.stdout)
    elapsed = [o for o in objs if o["type"] == "summary"][0]["elapsed_s"]
    assert _counters(objs)["task-clock"]["value"] <= elapsed * 1e9 * 1.01
    assert 0.1 <= elapsed < 1.0


@pytest.mark.root
def test_filters_select_the_marker_opens_exactly(workload, tmp_path):
    marker = str(tmp_path / "marker")
    counts = _stat_json("-e", OPENAT, "--filter", "flags & 64",         # O_CREAT
                        "-e", OPENAT, "--filter", f'filename == "{marker}"',
                        "-e", OPENAT, "--filter", 'filename ~ "/nonexistent/*"',
                        "--", workload, "open", marker, "5")
    # three events of the same name: JSON keeps the last; check all three in text
    res = pytracekit("stat", "-e", OPENAT, "--filter", "flags & 64",
                     "-e", OPENAT, "--filter", f'filename == "{marker}"',
                     "-e", OPENAT, "--filter", 'filename ~ "/nonexistent/*"',
                     "--", workload, "open", marker, "5")
    values = [int(m.group(1).replace(",", "")) for m in
              re.finditer(r"^\s+([\d,]+)\s+syscalls:sys_enter_openat", res.stdout, re.M)]
    assert values == [5, 5, 0]
    assert counts[OPENAT]["value"] == 0


def _perf_stat_count(event: str, filter_: str, *command: str) -> int:
    """perf stat's count of one tracepoint with a filter: the oracle."""
    res = subprocess.run(["perf", "stat", "-x,", "-e", event, "--filter", filter_, "--",
                          *command], capture_output=True, text=True, timeout=60, check=True)
    return int(next(line for line in res.stderr.splitlines() if event in line).split(",")[0])


@pytest.mark.root
def test_a_negative_literal_compares_as_the_declared_int(workload, tmp_path):
    """`dfd` is declared `int` but stored in 8 unsigned bytes: `dfd == -100`
    (AT_FDCWD) matches as it would in C. The kernel's own filter refuses -100
    for that field, so perf is asked for the same value as its low 32 bits."""
    marker = str(tmp_path / "marker")
    command = (workload, "open", marker, "7")
    ours = _stat_json("-e", OPENAT, "--filter", "dfd == -100", "--", *command)[OPENAT]["value"]
    baseline = _stat_json("-e", OPENAT, "--filter", "dfd == -100", "--", workload, "open",
                          marker, "0")[OPENAT]["value"]
    assert ours - baseline == 7
    assert ours == _perf_stat_count(OPENAT, "dfd == 0xffffff9c", *command)
    assert _stat_json("-e", OPENAT, "--", *command)[OPENAT]["value"] == ours
    assert _stat_json("-e", OPENAT, "--filter", "dfd != -100", "--",
                      *command)[OPENAT]["value"] == 0


def _rows(text: str) -> list[tuple[str, int]]:
    return [(m.group(2), int(m.group(1).replace(",", ""))) for m in
            re.finditer(r"^\s+([\d,]+)\s+(\S+)\s+#", text, re.M)]


def _fd_links(pid: int) -> list[str]:
    """What pid's open fds name; an fd closed while they are listed is left out
    (the tool may be opening and closing files meanwhile: seen in CI)."""
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return links


@pytest.mark.root
def test_plain_events_and_kernel_filters_count_without_bpf(workload, tmp_path):
    """A plain tracepoint and a filter the kernel applies itself are perf
    counters: while stat runs it holds perf event fds, no BPF program or map,
    and has not loaded BCC at all; the counts stay exact."""
    with GatedWorkload(workload, tmp_path, "open", str(tmp_path / "marker"), "6") as w:
        tool = Tool("stat", "--verbose", "-p", str(w.pid), "-e", OPENAT,
                    "-e", OPENAT, "--filter", "flags & 64", "-e", "page-faults").start()
        pid = tool.proc.pid
        links = _fd_links(pid)
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert w.release() == 0
        out, err = tool.wait()
    assert tool.returncode == 0, err
    assert links.count("anon_inode:[perf_event]") >= 3, links
    assert not [link for link in links if "bpf" in link], links
    assert "libbcc" not in maps
    assert f"stat: {OPENAT}: perf counter\n" in err
    assert f"stat: {OPENAT}: perf counter, kernel filter '(((flags & 64)))'" in err
    assert _rows(out)[:2] == [(OPENAT, 6), (OPENAT, 6)]


# What a plain or kernel-filtered stat never needs: BCC, the BPF loader and
# program cache, the expression parser (the kernel filter's check needs only
# probes.ctype), and what only other paths import (shutil for a command found
# on PATH, traceback for an internal error, difflib for click's did-you-mean).
STAT_NEVER = ("bcc", "pytracekit.kernel.bccload", "pytracekit.engine.loader",
              "pytracekit.engine.follow", "pytracekit.engine.progcache", "pytracekit.probes.expr",
              "shutil", "traceback", "difflib")


def test_the_module_leaves_bcc_and_the_loader_unimported():
    code = ("import sys, pytracekit.cli.command, pytracekit.tools.stat; "
            f"print(sorted(m for m in sys.modules if m.startswith({STAT_NEVER!r})))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert res.stdout.strip() == "[]", res.stdout


@pytest.mark.root
def test_a_plain_and_a_kernel_filtered_stat_run_without_bcc_or_the_loader(workload, tmp_path):
    """A whole run, counts included: perf counters only, nothing of BCC imported."""
    argv = ["stat", "--json", "-e", "syscalls:sys_enter_openat", "-e",
            "syscalls:sys_enter_openat", "--filter", "flags & 64", "--", workload, "open",
            str(tmp_path / "marker"), "5"]
    code = ("import json, sys\n"
            "from pytracekit.cli.command import main\n"
            f"status = main({argv!r})\n"
            "sys.stdout.flush()\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({STAT_NEVER!r}))),"
            " file=sys.stderr)\n"
            "sys.exit(status)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stderr.splitlines()[-1]) == [], res.stderr
    counts = [obj["value"] for obj in map(json.loads, res.stdout.splitlines())
              if obj["type"] == "counter"]
    assert counts[1] == 5, counts                 # O_CREAT: the workload's own opens
    assert 5 < counts[0] <= 15, counts            # and the dynamic loader's few


def _perf_stat_counts(args: list[str], command: tuple[str, ...]) -> list[int]:
    res = subprocess.run(["perf", "stat", "-x,", *args, "--", *command], capture_output=True,
                         text=True, timeout=60, check=True)
    return [int(line.split(",")[0]) for line in res.stderr.splitlines() if OPENAT in line]


@pytest.mark.root
def test_kernel_and_bpf_filters_count_what_perf_stat_counts(workload, tmp_path):
    """`flags & 64` and a grouping the kernel must read as C does are kernel
    filters; `dfd == 0xffffff9c` (an int stored in 8 bytes) is counted by BPF.
    Each equals perf stat --filter's count of the same command."""
    command = (workload, "open", str(tmp_path / "marker"), "7")
    filters = ["flags & 64", "flags & 64 || flags & 1 && flags & 2", "dfd == 0xffffff9c"]
    args = [a for f in filters for a in ("-e", OPENAT, "--filter", f)]
    res = pytracekit("stat", "--verbose", *args, "--", *command)
    assert res.returncode == 0, res.stderr
    how = re.findall(rf"^stat: {OPENAT}: (.*)$", res.stderr, re.M)
    assert how == ["perf counter, kernel filter '(((flags & 64)))'",
                   "perf counter, kernel filter '(((flags & 64)) || ((flags & 1) && "
                   "(flags & 2)))'", "BPF program"]
    ours = [n for _, n in _rows(res.stdout)]
    assert ours == _perf_stat_counts(args, command)
    assert ours[0] == ours[1] == 7      # the workload's O_CREAT opens; ld.so's are not
    assert ours[2] >= 7                 # those and ld.so's, from AT_FDCWD


@pytest.mark.root
def test_ebpf_and_dry_run_say_there_is_no_program_for_plain_events():
    """Plain counts need no BPF: --ebpf says so in a C comment, --dry-run
    succeeds with nothing to compile (both exit 0, like every tool's)."""
    ebpf = pytracekit("stat", "--ebpf", "-e", "syscalls:sys_enter_openat", "--", "/bin/true")
    assert ebpf.returncode == 0, ebpf.stderr
    assert ebpf.stdout.startswith("/* stat: no BPF program: ") and "BPF_" not in ebpf.stdout
    dry = pytracekit("stat", "--dry-run", "-e", "syscalls:sys_enter_openat", "--", "/bin/true")
    assert dry.returncode == 0, dry.stderr
    assert "nothing to compile" in dry.stdout


def test_filters_become_kernel_filters_only_where_the_kernel_tests_the_same():
    tp = parse_format("syscalls", "sys_enter_openat", "\n".join([
        "field:int dfd;\toffset:16;\tsize:8;\tsigned:0;",
        "field:const char * filename;\toffset:24;\tsize:8;\tsigned:0;",
        "field:int flags;\toffset:32;\tsize:8;\tsigned:0;",
        "field:u64 count;\toffset:40;\tsize:8;\tsigned:0;",
        "field:pid_t pid;\toffset:48;\tsize:4;\tsigned:1;"]))
    assert ftrace_filter("flags & 64", tp) == "(((flags & 64)))"
    assert ftrace_filter("!(flags & 0x40) && count >= 010", tp) == \
        "((!(((flags & 64))) && (count >= 8)))"
    assert ftrace_filter("pid == -1 || pid > 5 && count < 3", tp) == \
        "(((pid == -1)) || ((pid > 5) && (count < 3)))"
    for untranslatable in ("dfd == -100",              # the kernel sees all 8 bytes
                           "flags & -1",               # sign-extended in C
                           "flags & 0x100000000",      # beyond the int's bits
                           "pid == 0x80000000",        # out of pid_t's range
                           'filename == "/tmp/x"',     # a user pointer
                           "flags & 64 && dfd == 3"):  # one part is enough
        assert ftrace_filter(untranslatable, tp) is None, untranslatable
    with pytest.raises(SpecError):
        ftrace_filter("flags &", tp)
    # a user string is read by pytracekit.h's alias, not by a name BCC's front end
    # looks up in kallsyms (tests/test_compile_lookups.py)
    helpers = compile_filter('filename == "/tmp/x"', tp, "f0").helpers
    assert "ptk_probe_read_user_str(" in helpers
    assert not re.search(r"\bbpf_probe_read_user_str\b", helpers)


@pytest.mark.root
def test_pid_counts_exactly_the_opens_after_attach(workload, tmp_path):
    with GatedWorkload(workload, tmp_path, "open", str(tmp_path / "marker"), "6") as w:
        tool = Tool("stat", "-p", str(w.pid), "-e", f"{OPENAT},page-faults,cycles",
                    "--json").start()
        assert w.release() == 0
        out, err = tool.wait()       # stat -p ends when the process exits
    assert tool.returncode == 0, err
    counters = _counters(validate_json_lines("stat", out))
    assert counters[OPENAT]["value"] == 6
    assert counters["page-faults"]["supported"] and counters["page-faults"]["value"] >= 0
    assert counters["cycles"]["supported"] is False and counters["cycles"]["value"] is None


@pytest.mark.root
def test_text_layout_like_perf_stat(workload, tmp_path):
    res = pytracekit("stat", "-d", "--", workload, "open", str(tmp_path / "m"), "3")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"Performance counter stats for '{workload} open" in out
    assert re.search(r"^\s+[\d,]+\.\d\d msec task-clock\s+#\s+[\d.]+ CPUs utilized$", out, re.M)
    assert re.search(r"^\s+[\d,]+\s+page-faults\s+#\s+[\d.]+ [KMG]?/sec$", out, re.M)
    for hw in ("cycles", "instructions", "L1-dcache-loads", "LLC-load-misses"):
        assert re.search(rf"^\s+<not supported>\s+{hw}$", out, re.M), hw
    assert re.search(r"^\s+\d+\.\d{9} seconds time elapsed$", out, re.M)
    assert re.search(r"seconds user\n\s+\d+\.\d+ seconds sys", out)


@pytest.mark.root
def test_repeats_show_variance(workload, tmp_path):
    marker = str(tmp_path / "m")
    res = pytracekit("stat", "-r", "3", "-e", f"task-clock,{OPENAT}", "--",
                     workload, "open", marker, "2")
    assert res.returncode == 0, res.stderr
    assert "(3 runs)" in res.stdout
    assert re.search(r"msec task-clock.*\( \+-\s+[\d.]+% \)", res.stdout)
    assert re.search(r"\+- [\d.]+ seconds time elapsed\s+\( \+-", res.stdout)
    counters = _stat_json("-r", "3", "-e", OPENAT, "--", workload, "open", marker, "2")
    assert counters[OPENAT]["runs"] == 3
    assert counters[OPENAT]["stddev_pct"] == 0.0       # every run opens the same number
    # a filter only BPF can apply: one program serves the three runs, each
    # following its own command (FOLLOW_ROOT rewritten per run)
    counters = _stat_json("-r", "3", "-e", OPENAT, "--filter", f'filename == "{marker}"',
                          "--", workload, "open", marker, "2")
    assert counters[OPENAT]["runs"] == 3
    assert (counters[OPENAT]["value"], counters[OPENAT]["stddev_pct"]) == (2, 0.0)


@pytest.mark.root
def test_interval_and_system_wide(workload):
    res = pytracekit("stat", "-a", "-I", "200", "--duration", "0.7", "-e", "cpu-clock", "--json")
    assert res.returncode == 0, res.stderr
    objs = validate_json_lines("stat", res.stdout)
    ticks = [o for o in objs if o["type"] == "interval"]
    assert len(ticks) == 3
    assert all(0 < o["value"] for o in ticks)
    assert _counters(objs)["cpu-clock"]["value"] > 0


@pytest.mark.root
def test_user_and_kernel_modifiers(workload):
    """Every page fault happens in user or in kernel mode: :u + :k is the total."""
    counters = _stat_json("-e", "page-faults:u,page-faults:k,page-faults", "--",
                          workload, "open", "/dev/null", "1")
    user, kernel, both = (counters[k]["value"] for k in ("page-faults:u", "page-faults:k",
                                                         "page-faults"))
    assert user > 0 and kernel > 0
    assert user + kernel == both


def test_event_specs_parse():
    assert parse("cycles:u").user and not parse("cycles:u").kernel
    assert parse("page-faults:k").kernel and not parse("page-faults:k").user
    assert parse("sched:sched_switch").kind == "tracepoint"
    assert parse("L1-dcache-loads").kind == "cache"
    with pytest.raises(SpecError):
        parse("cycles:")
    with pytest.raises(NotFoundError):
        parse("no-such-event")


def test_report_renders_and_parses_back():
    counters = [perfstat.CounterResult("task-clock", "software", [2_000_000, 2_000_000]),
                perfstat.CounterResult("page-faults", "software", [1000, 1200]),
                perfstat.CounterResult("cycles", "hardware", supported=False)]
    out = perfstat.report("true", counters, [0.004, 0.004])
    assert "(2 runs)" in out
    assert re.search(r"^\s+2\.00 msec task-clock\s+#\s+0\.500 CPUs utilized", out, re.M)
    assert re.search(r"^\s+1,100\s+page-faults\s+#\s+550\.000 K/sec\s+\( \+-\s+9\.09% \)$",
                     out, re.M)
    assert re.search(r"^\s+<not supported>\s+cycles$", out, re.M)


@pytest.mark.root
@pytest.mark.parametrize("args, status, message", [
    (["-a", "-e", "no-such-event"], 1, "unknown event 'no-such-event'"),
    (["-a", "-e", "sched:sched_swich"], 1, "unknown tracepoint sched:sched_swich; similar:"),
    (["-a", "-e", "cycles:"], 2, "malformed event 'cycles:'"),
    (["-p", "999999999", "-e", "cycles"], 1, "no process with pid 999999999"),
    (["-a", "-e", OPENAT, "--filter", "flags &"], 2, "malformed filter 'flags &'"),
    (["-a", "--filter", "flags & 1"], 2, "--filter must follow a tracepoint event"),
    (["-e", "cycles"], 2, "give -a, -C CPUS, -p PID or -- COMMAND"),
    (["-C", "7", "-e", "cycles"], 2, "no CPU 7"),
])
def test_bad_input_is_one_line(args, status, message):
    res = pytracekit("stat", "--duration", "0", *args)
    assert res.returncode == status, res.stderr
    assert message in res.stderr
    assert res.stderr.count("\n") == 1, res.stderr


def test_not_root_is_one_line():
    res = as_nobody("stat", "-a", "-e", OPENAT, "--duration", "0")
    assert res.returncode == 1
    assert "needs root" in res.stderr and res.stderr.count("\n") == 1


@pytest.mark.root
def test_cpu_list_counts_only_on_those_cpus(workload, tmp_path):
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        pytest.skip("needs 2 CPUs and taskset")
    marker = str(tmp_path / "m")
    args = ["-e", OPENAT, "--filter", f'filename == "{marker}"', "--",
            "taskset", "-c", "1", workload, "open", marker, "20"]
    on_cpu1 = _stat_json("-C", "1", *args)[OPENAT]["value"]
    on_cpu0 = _stat_json("-C", "0", *args)[OPENAT]["value"]
    assert (on_cpu0, on_cpu1) == (0, 20)
    clock = _stat_json("-C", "0", "-e", "cpu-clock", "--duration", "0.5")["cpu-clock"]["value"]
    assert 0.4e9 < clock < 0.7e9          # one CPU's worth of time


@pytest.mark.root
def test_glob_events_keep_their_filter_and_later_filters_their_event(workload, tmp_path):
    marker = str(tmp_path / "m")
    res = pytracekit("stat", "-e", "syscalls:sys_enter_open*t", "--filter", "flags & 64",
                     "-e", "sched:sched_process_exec", "-e", OPENAT, "--filter",
                     f'filename == "{marker}"', "--", workload, "open", marker, "4")
    assert res.returncode == 0, res.stderr
    rows = [(m.group(2), int(m.group(1))) for m in re.finditer(
        r"^\s+([\d,]+)\s+(\S+)\s+#", res.stdout, re.M)]
    assert rows == [("syscalls:sys_enter_open_by_handle_at", 0), ("syscalls:sys_enter_openat", 4),
                    ("sched:sched_process_exec", 1), ("syscalls:sys_enter_openat", 4)]
    res = pytracekit("stat", "-e", "syscalls:sys_enter_open*", "--filter", "flags & 64",
                     "--", workload, "open", marker, "1")
    assert res.returncode == 1
    assert "tracepoint syscalls:sys_enter_openat2 has no field 'flags'" in res.stderr


@pytest.mark.root
def test_interval_in_seconds_like_every_tool():
    """--interval SECONDS is -I in milliseconds: 0.2 s over 0.7 s is three ticks."""
    res = pytracekit("stat", "-a", "--interval", "0.2", "--duration", "0.7", "-e", "cpu-clock",
                     "--json")
    assert res.returncode == 0, res.stderr
    ticks = [o for o in validate_json_lines("stat", res.stdout) if o["type"] == "interval"]
    assert len(ticks) == 3


def test_interval_and_interval_ms_together_is_a_usage_error():
    res = pytracekit("stat", "-a", "--interval", "0.2", "-I", "200", "--duration", "0")
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "pytracekit stat: error: give -I MS or --interval SECONDS, not both"]
