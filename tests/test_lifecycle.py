"""periodic.attached: the lifecycle the summary tools share, in order, and the
command always stopped (the tools run it for real in their own tests)."""
import pytest

from pytracekit.errors import CompileError
from pytracekit.families.periodic import attached


class FakeTool:
    """A tool's session (engine.session.Session): loaded when begin() returns it,
    ready() once attached, close() detaches (the context manager's exit)."""

    def __init__(self, log):
        self.log = log
        log.append("loaded")

    def ready(self):
        self.log.append("ready")

    def read(self):
        return None

    def loss(self):
        return None

    def close(self):
        self.log.append("detached")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FakeTarget:
    def __init__(self, log):
        self.log = log

    def finish(self):
        self.log.append("finished")


def test_order_of_a_run(capsys):
    log = []
    with attached(FakeTarget(log), lambda: FakeTool(log), "Tracing... Hit Ctrl-C to end.") as tool:
        log.append("body")
    assert isinstance(tool, FakeTool)
    assert log == ["loaded", "ready", "body", "detached", "finished"]
    assert capsys.readouterr().err == "Tracing... Hit Ctrl-C to end.\n"


def test_the_command_is_stopped_when_compiling_fails(capsys):
    log = []

    def begin():
        raise CompileError("no")
    with pytest.raises(CompileError):
        with attached(FakeTarget(log), begin, "never shown"):
            log.append("body")
    assert log == ["finished"]
    assert capsys.readouterr().err == ""


def test_detached_then_stopped_when_the_body_is_interrupted():
    log = []
    with pytest.raises(KeyboardInterrupt):
        with attached(FakeTarget(log), lambda: FakeTool(log), "Tracing..."):
            raise KeyboardInterrupt
    assert log == ["loaded", "ready", "detached", "finished"]
