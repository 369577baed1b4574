"""BCC's `[interval [count]]` positionals, then `-- COMMAND`: one parser
(options.split_interval_count) for every tool that prints per interval."""
import pytest

from conftest import pytracekit
from pytracekit.families import summary
from pytracekit.errors import UsageError


@pytest.mark.parametrize("words, flags, expected", [
    (("1", "1", "/bin/true"), (None, None), (1.0, 1, ("/bin/true",))),
    (("0.5",), (None, None), (0.5, None, ())),
    (("/bin/echo", "1", "2"), (None, None), (None, None, ("/bin/echo", "1", "2"))),
    (("/bin/true",), (2.0, 3), (2.0, 3, ("/bin/true",))),
    ((), (None, None), (None, None, ())),
])
def test_interval_count_then_command(words, flags, expected):
    assert summary.interval_and_count(words, *flags) == expected


@pytest.mark.parametrize("words, flags, message", [
    (("1",), (2.0, None), "give the interval once"),
    (("1", "2"), (None, 3), "give the count once"),
    ((), (None, 3), "a count needs an interval"),
    (("1", "0"), (None, None), "count"),
])
def test_interval_count_mistakes(words, flags, message):
    with pytest.raises(UsageError, match=message):
        summary.interval_and_count(words, *flags)


@pytest.mark.root
@pytest.mark.parametrize("tool", ["runqlat", "biolatency", "hardirqs", "softirqs",
                                  "bitesize", "syscount"])
def test_interval_count_before_a_command(tool):
    """`TOOL 1 1 -- /bin/true` runs /bin/true, not a command named `1`."""
    res = pytracekit(tool, "--json", "5", "1", "--", "/bin/true")
    assert res.returncode == 0, res.stderr
    assert "cannot run" not in res.stderr
