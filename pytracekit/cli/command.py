"""The `pytracekit` command: a click group whose subcommands are the tools.

Tools are discovered from pytracekit/tools/ and imported only when run, so
adding a tool touches no other file and start-up stays fast. This is also the
single place where errors become one line and an exit status.
"""
from __future__ import annotations

import gc
import os
import sys
from importlib import import_module

import click

from .. import __version__, tools
from ..engine import endtimes, settings, startup
from . import stdout
from ..errors import EXIT_RUNTIME, EXIT_USAGE, PytracekitError, UsageError


def tool_names() -> list[str]:
    # A directory listing, not pkgutil: pkgutil imports inspect (~30 ms at start-up).
    found = set()
    for directory in tools.__path__:
        for entry in os.listdir(directory):
            stem, ext = os.path.splitext(entry)
            if ext == ".py" and not stem.startswith("_"):
                found.add(stem)
    return sorted(found)


class ReaderGone(Exception):
    """stdout's reader went away (`| head`). Not an OSError, so that click's
    own EPIPE handling (exit status 1) lets it through to main()."""


class ToolGroup(click.Group):
    def main(self, *args, **kwargs):
        # One run's --verbose/--ebpf/--dry-run end with it (see settings.run).
        with settings.run():
            return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        # The tool's stdout fails once, as StdoutError (see pytracekit.cli.stdout).
        with stdout.guarded():
            try:
                result = super().invoke(ctx)
                sys.stdout.flush()      # a full disk may show only at the last flush
                return result
            except BrokenPipeError as exc:
                raise ReaderGone() from exc

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, cmd, rest = super().resolve_command(ctx, args)
        if rest and rest[-1] == "--":
            # `profile --` used to profile the whole system: an empty command
            # is a mistake, not a request for everything.
            raise UsageError("nothing after '--': give the command to run after it, "
                             "or leave '--' out")
        return name, cmd, rest

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(tool_names()) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:   # added from Python (see examples/)
            return self.commands[name]
        if name not in tool_names():
            return None
        command = import_module(f"{tools.__name__}.{name}").command
        if not gc.isenabled():   # off for the imports (__main__)
            gc.freeze()
            gc.enable()
        startup.mark(f"tool {name} imported")
        return command


@click.group(cls=ToolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pytracekit")
def cli() -> None:
    """eBPF tracing and profiling for kernels with BTF and no headers."""


def _prog_name(args: list[str]) -> str:
    for arg in args:
        if not arg.startswith("-"):
            return f"pytracekit {arg}"
    return "pytracekit"


def main(args: list[str] | None = None, prog: str | None = None) -> int:
    args = list(sys.argv[1:] if args is None else args)
    name = prog or _prog_name(args)
    with settings.run():   # open here too: the handlers below read --verbose
        return _main(args, name)


def _main(args: list[str], name: str) -> int:
    from ..errors import DryRunComplete, EbpfPrinted
    from ..engine.runner import claimed_signals, interrupted_status
    try:
        with claimed_signals():
            cli.main(args=args, prog_name="pytracekit", standalone_mode=False)
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort as exc:   # click's wrapping of a KeyboardInterrupt
        cause = exc.__cause__
        return interrupted_status(cause if isinstance(cause, KeyboardInterrupt) else
                                  KeyboardInterrupt())
    except click.ClickException as exc:   # usage errors
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        click.echo(f"{name}: error: {exc.format_message()}{hint}", err=True)
        return exc.exit_code if exc.exit_code else EXIT_USAGE
    except DryRunComplete as done:
        click.echo(str(done))
        return 0
    except EbpfPrinted:
        return 0
    except stdout.StdoutError as exc:
        if exc.reader_gone:     # `| head`: the reader has what it wanted
            return 0
        click.echo(f"{name}: error: {exc.message}", err=True)
        return exc.exit_status
    except PytracekitError as exc:
        click.echo(f"{name}: error: {exc.message}", err=True)
        if settings.current().verbose and exc.detail:
            click.echo(exc.detail, err=True)
        return exc.exit_status
    except KeyboardInterrupt as exc:   # before tracing began (later, tools print results)
        return interrupted_status(exc)
    except (BrokenPipeError, ReaderGone):
        # The reader went away (`| head`); nothing more to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug: say so in one line, details on request
        if settings.current().verbose:
            import traceback   # here: it imports linecache and tokenize, a cost at every start
            traceback.print_exc()
        click.echo(f"{name}: internal error: {type(exc).__name__}: {exc} "
                   "(rerun with --verbose for the traceback)", err=True)
        return EXIT_RUNTIME


def run() -> None:
    status = main()
    endtimes.report()
    exit_now(status)


def exit_now(status: int) -> None:
    """End the command without the interpreter's teardown of every module and
    object (~0.1 s after a profile, with its symbol tables and BCC's libraries'
    destructors; ~10 ms of CPU for a plain `stat -- CMD`), once what matters is
    done: the atexit handlers run (BCC's cleanup, the program cache's, temporary
    files), stdout, stderr and C stdio are flushed. Results are written by then
    (files through outfile.write_file, closed). The interpreter's own exit does it
    all instead while a thread other than daemons is left to join, under a
    profiler or coverage tracer that writes its data once the command returns
    (`python -m cProfile -m pytracekit`), or when a stream cannot be flushed."""
    threading = sys.modules.get("threading")   # not imported: no other thread
    if ((threading is not None
         and any(t.is_alive() and not t.daemon for t in threading.enumerate()
                 if t is not threading.main_thread()))
            or sys.gettrace() is not None or sys.getprofile() is not None):
        sys.exit(status)
    import atexit
    atexit._run_exitfuncs()   # pylint: disable=protected-access  # and clears them
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:   # None: started with that descriptor closed
                stream.flush()
    except (OSError, ValueError):
        sys.exit(status)   # the interpreter's exit reports it as it always does
    if "ctypes" in sys.modules:   # what C code buffered in stdio (libbcc)
        import ctypes
        ctypes.CDLL(None).fflush(None)
    os._exit(status)
