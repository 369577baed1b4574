"""cprofile: continuous profiling, one pprof per window, on disk or pushed.

    pytracekit cprofile --every 10 --dir /var/lib/pytracekit/profiles --keep 60
    pytracekit cprofile --kind cpu --kind offcpu --push http://pyroscope:4040 --app web

profile (on-CPU samples) and/or offcputime (blocked time) run once; every
--every seconds the samples of that window alone are written as pprof
(pytracekit.render.pprof) and/or pushed to a Pyroscope-compatible /ingest.
"""
from __future__ import annotations

import contextlib

import time
from dataclasses import dataclass
from typing import Any

import click

from ..cli import options
from ..families import stack_profilers as stacktools
from ..errors import PytracekitError, UsageError
from ..fleet.continuous import Push, PyroscopePusher, RotatingDir, Windower
from ..model import LossReport
from ..engine.runner import announce, run_until_done

DRY_RUN_ARGS = ["--dir", "/tmp/pytracekit-cprofile-dry-run"]
KINDS = ("cpu", "offcpu")


@dataclass
class Stream:
    """One profiler and the windows cut from it."""

    kind: str
    session: Any
    sample_rate: int
    windower: Windower
    since: float            # wall clock of the window start
    resets: int = 0

    def cut(self, now: float) -> Any:
        cumulative = self.session.read()
        profile = self.windower.window(cumulative, int((now - self.since) * 1e9))
        start, self.since = self.since, now
        if self.nearly_full():
            self.reset()
        return profile, start

    def stack_maps(self) -> list[Any]:
        """Where this program stores stacks: by hash (kstacks, and ustacks of the
        in-kernel unwinder, profile --unwind dwarf), else the stack map."""
        prog, maps = self.session.prog, []
        for name in ("kstacks", "ustacks"):
            with contextlib.suppress(KeyError):
                maps.append(prog[name])
        return maps if len(maps) == 2 else maps + [prog["stack_traces"]]

    def nearly_full(self) -> bool:
        """Windows are diffs of cumulative maps, which fill on a long run; past 40%
        of the smallest map (a key holds up to two stacks) they start over. Python
        samples are counted apart (py_counts, their stacks in py_stacks)."""
        prog = self.session.prog
        counts = prog["counts"]
        used = len(counts) + (len(prog["py_counts"]) if self.python else 0)
        full = used > 0.4 * min(m.max_entries for m in [counts, *self.stack_maps()])
        return full or bool(self.python) and len(prog["py_stacks"]) > \
            0.4 * prog["py_stacks"].max_entries

    @property
    def python(self) -> Any:
        """The session's PythonFrames, when it walks Python stacks."""
        return getattr(self.session, "python", None)

    def reset(self) -> None:
        """Empty the maps right after a read. Samples that land between that read
        and the clear (microseconds) are lost; resets are counted in the summary."""
        prog = self.session.prog
        if self.python:   # stacks before counts: a count's stack is then re-stored
            prog["py_stacks"].clear()
            prog["py_counts"].clear()
            self.python.clear_stacks()
        prog["counts"].clear()
        for stacks in self.stack_maps():
            stacks.clear()
        self.session.symbolizer.clear_stacks()
        if getattr(self.session, "first_samples", None) is not None:
            self.session.first_samples.clear()   # counted with counts
        self.windower.seen = {}
        self.resets += 1


def start_streams(kinds: tuple[str, ...], pids: list[int], command: tuple[str, ...],
                  frequency: int, python: bool = True) -> list[Stream]:
    from . import offcputime, profile
    streams: list[Stream] = []
    try:
        for kind in kinds:
            if kind == "cpu":
                session = profile.start(pids=pids, command=command, frequency=frequency,
                                        python=python)
                streams.append(Stream(kind, session, frequency, Windower(), time.time()))
            else:
                session = offcputime.start(pids=pids, command=command, python=python)
                streams.append(Stream(kind, session, 0, Windower(), time.time()))
    except BaseException:
        for stream in streams:
            stream.session.close()
        raise
    return streams


def check_push_url(url: str) -> str:
    """Refused at start: a bad URL only showed as failed pushes in the summary,
    after the whole run (and exit status 0)."""
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--push {url!r} is not an http(s) URL: give the server's address, "
                         "e.g. http://localhost:4040")
    try:
        parts.port   # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise UsageError(f"--push {url!r} has a bad port: e.g. http://localhost:4040") from None
    return url


def parse_tags(tags: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for tag in tags:
        key, eq, value = tag.partition("=")
        if not eq or not key or any(c in key + value for c in "{},="):
            raise UsageError(f"bad --tag '{tag}': expected KEY=VALUE without {{}},=")
        out[key] = value
    return out


@click.command("cprofile", cls=options.CommandAfterDashes,
               context_settings=options.TOOL_CONTEXT)
@click.option("--every", type=options.Seconds(0.1), default=10.0, show_default=True,
              help="Seconds per window (one pprof per window and kind).")
@click.option("--kind", "kinds", type=click.Choice(KINDS), multiple=True,
              help="cpu (profile) and/or offcpu (offcputime); default cpu.")
@click.option("--dir", "directory", metavar="DIR", default=None,
              help="Write KIND-TIMESTAMP.pb.gz files here.")
@click.option("--keep", type=click.IntRange(min=1), default=60, show_default=True,
              help="Files of each kind kept in --dir (oldest removed).")
@click.option("--push", "push_url", metavar="URL", default=None,
              help="Pyroscope-compatible server to POST /ingest to.")
@click.option("--app", default="pytracekit", show_default=True,
              help="Application name for --push (APP.cpu, APP.offcpu).")
@click.option("--tag", "tags", metavar="KEY=VALUE", multiple=True,
              help="Label added to pushed profiles (repeatable).")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Retries of a failed push, with exponential backoff.")
@click.option("-F", "--frequency", type=options.SampleFrequency(), default=49, show_default=True,
              help="cpu: samples per second on each CPU.")
@click.option("-p", "--pid", "pid_list", type=options.ProcessIds(), default=None,
              help="Profile these processes only (comma-separated).")
@click.option("--python/--no-python", "python", default=True, show_default=True,
              help="cpu: Python frames of CPython 3.8-3.13 processes (found per process).")
@options.duration_option("-d")
@options.output_options()
@options.standard
@click.pass_context
def command(ctx, every, kinds, directory, keep, push_url, app, tags, retries, frequency,
            pid_list, python, duration, out) -> None:
    """Profile continuously; every window becomes a pprof file or a push.

    \b
    Examples:
      pytracekit cprofile --dir /tmp/prof --every 10 --keep 6
      pytracekit cprofile --kind cpu --kind offcpu --push http://localhost:4040 --app db
      pytracekit cprofile --dir /tmp/prof -- ./myprog
    """
    kinds = tuple(dict.fromkeys(kinds or ("cpu",)))
    if not directory and not push_url:
        raise UsageError("cprofile needs somewhere to put profiles: --dir DIR and/or --push URL")
    command = options.command_of(ctx)
    if command and len(kinds) > 1:
        raise UsageError("-- COMMAND runs one profiler: give one --kind, or use -p PID")
    labels = parse_tags(tags)
    if push_url:
        check_push_url(push_url)
    pids = stacktools.id_list(pid_list, "pid")
    rotating = RotatingDir(directory, keep) if directory else None
    streams = start_streams(kinds, pids, command, frequency, python)
    pusher = PyroscopePusher(push_url, app, labels, retries) if push_url else None
    totals = {"windows": 0, "files": 0, "write_errors": 0}

    def flush() -> None:
        now = time.time()
        for stream in streams:
            ship(stream, now)

    def ship(stream: Stream, now: float) -> None:
        from ..render.pprof import to_pprof
        profile, start = stream.cut(now)
        data = to_pprof(profile)
        totals["windows"] += 1
        path = None
        if rotating is not None:
            try:
                path = str(rotating.write(stream.kind, data, start))
                totals["files"] += 1
            except PytracekitError as exc:   # a full disk must not stop profiling...
                totals["write_errors"] += 1
                totals["last_write_error"] = exc.message
        if pusher is not None:
            pusher.submit(Push(stream.kind, data, start, now, stream.sample_rate))
        report_window(stream.kind, start, now, profile, path)

    def report_window(kind, start, end, profile, path) -> None:
        out.emit(text=lambda: f"{time.strftime('%H:%M:%S', time.localtime(end))} {kind:<6} "
                              f"{profile.total:>10} {profile.unit:<12} {len(profile.samples):>6} "
                              f"stacks" + (f" -> {path}" if path else ""),
                 json=lambda: {"type": "window", "kind": kind, "from_unix": round(start, 3),
                               "until_unix": round(end, 3), "value_type": profile.value_type,
                               "unit": profile.unit, "total": profile.total,
                               "stacks": len(profile.samples), "file": path})

    def poll(timeout_ms: int) -> None:
        for stream in streams[1:]:
            stream.session.poll(0)
        streams[0].session.poll(timeout_ms)

    loss = LossReport()
    try:
        where = " and ".join(filter(None, [directory, push_url]))
        announce(f"Profiling {'+'.join(kinds)} in windows of {every:g} s to {where}... "
                 "Hit Ctrl-C to end.")
        for stream in streams:   # windows start when sampling does, not at compile time
            stream.since = time.time()
        run_until_done(streams[0].session.target, duration=duration, interval=every,
                       on_interval=flush, poll=poll)
        flush()   # the last, partial window
        for stream in streams:
            loss = loss + stream.session.loss()
        notes = [stream.session.summary_line() for stream in streams if stream.python]
    finally:
        for stream in streams:
            stream.session.close()
        if pusher is not None:
            pusher.close()
    summary = {"type": "summary", "windows": totals["windows"], "files_written": totals["files"],
               "write_errors": totals["write_errors"],
               "map_resets": sum(stream.resets for stream in streams)}
    if pusher is not None:
        stats = pusher.stats
        summary.update(pushes_ok=stats.ok, push_failures=stats.failed,
                       push_retries=stats.retries, pushes_dropped=stats.dropped)
        if stats.failed or stats.dropped:
            click.echo(f"cprofile: {stats.failed} pushes failed, {stats.dropped} dropped "
                       f"(last error: {stats.last_error})", err=True)
    out.emit(json=summary)
    out.loss(loss)
    for note in filter(None, notes):
        click.echo(note, err=True)
    if totals["write_errors"]:    # ...but the run failed
        raise PytracekitError(f"{totals['write_errors']} of {totals['windows']} windows not "
                              f"written (last: {totals['last_write_error']})")
