"""What kmem and mutexstat cost per event, against the probe mechanism's floor.

Rounds alternate (the order rotated each round): the workload alone, under the floor
(bench/floors.py: empty programs on the same probe points), under the tool. Per run:
the workload's CPU seconds (wait4's rusage: BPF programs and uprobe traps run in its
context, in its system time; steadier than wall time on a loaded machine) and its wall
seconds. Medians over the rounds. The overheads are measured with the kernel's BPF
statistics off, as users run; then a few more rounds with them on (BPF_ENABLE_STATS, held
by this process) give each program's run count and run time as the kernel counts them, and
the overhead with them on: they read a clock around every program run, which on kmem's
loop doubled the floor, so they are not left on for the overheads.

BENCH_BPF_STATS=0 skips the rounds with statistics on (no per-program columns). BENCH_BEFORE_ROOT=DIR adds the tool as checked out in DIR (an earlier commit) as
one more variant of every round: before and after in the same minutes."""
from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile
import time
from pathlib import Path

from .common import PY, ROOT, median, pick, table, write_json

WORKLOAD = str(ROOT / "tests" / "workload" / ".build" / "workload")
# tool, its arguments, its floors (name: bench.floors arguments), other ways to run it
# (name: arguments), the workload mode
CASES = [
    ("kmem", ["kmem"], {"floor": ["kmem"], "floor (allocations only)": ["kmem-allocs"]}, {},
     ["open", "/tmp/ptk-bench-file", "100000"]),
    ("mutexstat", ["mutexstat", "-p", "{pid}"],
     {"floor": ["mutexstat", "{pid}"],
      "floor (entries)": ["mutexstat-entry", "{pid}"]},
     {"tool --unwind fp": ["mutexstat", "--unwind", "fp", "-p", "{pid}"]}, ["mutex", "1000"]),
]
QUICK_MODES = {"kmem": ["open", "/tmp/ptk-bench-file", "10000"], "mutexstat": ["mutex", "100"]}


class _ProgInfo(ctypes.Structure):
    """The head of struct bpf_prog_info (uapi), up to the name."""
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("tag", ctypes.c_uint8 * 8), ("jited_prog_len", ctypes.c_uint32),
                ("xlated_prog_len", ctypes.c_uint32), ("jited_prog_insns", ctypes.c_uint64),
                ("xlated_prog_insns", ctypes.c_uint64), ("load_time", ctypes.c_uint64),
                ("created_by_uid", ctypes.c_uint32), ("nr_map_ids", ctypes.c_uint32),
                ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * 16)]


_LIBBPF = ctypes.CDLL("libbpf.so.1", use_errno=True)


def enable_stats() -> int:
    """An fd that keeps the kernel counting run time per program until closed."""
    fd = _LIBBPF.bpf_enable_stats(0)   # BPF_STATS_RUN_TIME
    if fd < 0:
        raise OSError(ctypes.get_errno(), "bpf_enable_stats")
    return fd


def _prog_name(prog_id: int) -> str:
    fd = _LIBBPF.bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        return f"id{prog_id}"
    try:
        info = _ProgInfo()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        _LIBBPF.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size))
        return info.name.decode() or f"id{prog_id}"
    finally:
        os.close(fd)


def prog_stats(pid: int) -> dict[str, tuple[int, int]]:
    """The BPF programs process `pid` holds: name -> (run count, run time ns); a name
    (cut to 15 characters by the kernel) taken again gets /2, /3 (in load order)."""
    progs = []
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            fields = dict(line.split(":", 1) for line in
                          Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
                          if ":" in line)
        except OSError:
            continue
        if "prog_id" in fields and "run_cnt" in fields:
            progs.append((int(fields["prog_id"]), int(fields["run_cnt"]),
                          int(fields["run_time_ns"])))
    out: dict[str, tuple[int, int]] = {}
    for prog_id, cnt, ns in sorted(set(progs)):
        name = base = _prog_name(prog_id)
        n = 1
        while name in out:
            n += 1
            name = f"{base}/{n}"
        out[name] = (cnt, ns)
    return out


def run_once(argv: list[str] | None, mode: list[str], cwd: Path = ROOT) -> dict:
    """The workload held at a go file, `argv` (if any) attached to it first ({pid}: its
    pid); returns its CPU and wall seconds and the attached programs' counters."""
    with tempfile.TemporaryDirectory() as tmp:
        go = os.path.join(tmp, "go")
        work = subprocess.Popen([WORKLOAD, "--go-file", go, *mode], stdout=subprocess.DEVNULL)
        tool = None
        if argv:
            rfd, wfd = os.pipe()
            tool = subprocess.Popen([PY, *[a.replace("{pid}", str(work.pid)) for a in argv]],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env={**os.environ, "PYTRACEKIT_READY_FD": str(wfd)},
                                    pass_fds=(wfd,), cwd=cwd)
            os.close(wfd)
            os.read(rfd, 16)
            os.close(rfd)
            before = prog_stats(tool.pid)
        start = time.perf_counter()
        open(go, "w").close()
        _, status, usage = os.wait4(work.pid, 0)
        wall = time.perf_counter() - start
        work.returncode = os.waitstatus_to_exitcode(status)
        progs = {}
        if tool:
            after = prog_stats(tool.pid)
            progs = {n: (c - before.get(n, (0, 0))[0], t - before.get(n, (0, 0))[1])
                     for n, (c, t) in after.items()}
            tool.send_signal(2)
            tool.communicate(timeout=120)
    return {"cpu": usage.ru_utime + usage.ru_stime, "wall": wall, "progs": progs,
            "sys": usage.ru_stime, "minflt": usage.ru_minflt,
            "csw": usage.ru_nvcsw + usage.ru_nivcsw}


def _rounds(variants: dict, mode: list[str], rounds: int) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    order = list(variants)
    for r in range(rounds):
        for v in order[r % len(order):] + order[:r % len(order)]:
            argv, cwd = variants[v]
            runs[v].append(run_once(argv, mode, cwd))
    return runs


def main() -> None:
    rounds, stats_rounds = pick(11, 2), pick(3, 1)
    before_root = os.environ.get("BENCH_BEFORE_ROOT")
    with_stats = os.environ.get("BENCH_BPF_STATS", "1") != "0"
    results: dict = {}
    rows = []
    for name, tool_args, floors, others, mode in CASES:
        mode = pick(mode, QUICK_MODES[name])
        variants = {"alone": (None, ROOT),
                    **{f: (["-m", "bench.floors", *a], ROOT) for f, a in floors.items()},
                    "tool": (["-m", "pytracekit", *tool_args], ROOT),
                    **{o: (["-m", "pytracekit", *a], ROOT) for o, a in others.items()}}
        if before_root:
            variants["tool (before)"] = (["-m", "pytracekit", *tool_args], Path(before_root))
        # the costs with the statistics off, as users run; then a few rounds with them
        # on, for what each program costs per run (they read a clock around every run)
        runs = _rounds(variants, mode, rounds)
        counted: dict[str, list[dict]] = {}
        if with_stats:
            stats_fd = enable_stats()
            try:
                counted = _rounds({v: a for v, a in variants.items() if v != "alone"},
                                  mode, stats_rounds)
            finally:
                os.close(stats_fd)
        alone_cpu = median([x["cpu"] for x in runs["alone"]])
        alone_wall = median([x["wall"] for x in runs["alone"]])
        results[name] = {"mode": mode, "runs": runs, "with_statistics": counted}
        for v in variants:
            cpu = median([x["cpu"] for x in runs[v]])
            wall = median([x["wall"] for x in runs[v]])
            stats_cpu = [x["cpu"] for x in counted.get(v, [])]
            on = counted.get(v) or [{"progs": {}}]
            cnt = median([sum(c for c, _ in x["progs"].values()) for x in on])
            ns = median([sum(t for _, t in x["progs"].values()) for x in on])
            per = "; ".join(
                f"{p} {median([x['progs'].get(p, (0, 0))[1] / max(1, x['progs'].get(p, (0, 0))[0]) for x in on]):.0f}"
                for p in sorted(on[0]["progs"]))
            rows.append([name, v, " ".join(mode), f"{cpu * 1000:.0f}",
                         f"{100 * (cpu - alone_cpu) / alone_cpu:+.1f}%",
                         f"{wall * 1000:.0f}", f"{100 * (wall - alone_wall) / alone_wall:+.1f}%",
                         (f"{100 * (median(stats_cpu) - alone_cpu) / alone_cpu:+.1f}%"
                          if stats_cpu else "-"),
                         f"{cnt:.0f}" if counted else "-", f"{ns / 1e6:.1f}" if counted else "-",
                         per or "-"])
    print(f"{rounds} rounds each with BPF statistics off (the overhead columns), then "
          f"{stats_rounds if with_stats else 0} with them on (the BPF columns); "
          f"{os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end.\n")
    print(table(["tool", "variant", "workload", "CPU (ms)", "CPU overhead", "wall (ms)",
                 "wall overhead", "CPU overhead, statistics on", "BPF runs", "BPF time (ms)",
                 "ns per run by program"], rows))
    write_json("event_cost", {"loadavg": os.getloadavg(), "bpf_stats": with_stats,
                              **results})
