"""Every tool's --help: a one-sentence summary first, and help text for every option."""
import importlib

import click
import pytest
from click.testing import CliRunner

from pytracekit.cli.command import cli, tool_names


def _command(name: str) -> click.Command:
    return importlib.import_module(f"pytracekit.tools.{name}").command


@pytest.mark.parametrize("name", tool_names())
def test_summary_is_one_sentence(name):
    summary = (_command(name).help or "").strip().split("\n\n")[0]
    assert summary, f"{name}: no docstring"
    assert "\n" not in summary, f"{name}: the summary runs over lines: {summary!r}"
    assert summary.endswith("."), f"{name}: the summary is not a sentence: {summary!r}"
    assert len(summary) <= 100, f"{name}: summary too long for `pytracekit --help`"


@pytest.mark.parametrize("name", tool_names())
def test_every_option_says_what_it_does(name):
    missing = [p.opts[0] for p in _command(name).params
               if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert not missing, f"{name}: options without help: {missing}"


@pytest.mark.parametrize("name", tool_names())
def test_help_prints_the_summary_first(name):
    res = CliRunner().invoke(cli, [name, "--help"])
    assert res.exit_code == 0, res.output
    usage, blank, rest = res.output.partition("\n\n")
    assert usage.startswith("Usage: ") and f" {name} " in usage, res.output
    first_paragraph = " ".join(rest.split("\n\n")[0].split())   # click wraps at 80 columns
    summary = (_command(name).help or "").strip().split("\n\n")[0]
    assert first_paragraph == summary, res.output


def test_group_help_lists_every_tool_with_its_summary():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0, res.output
    for name in tool_names():
        assert any(line.split()[:1] == [name] for line in res.output.splitlines()), name
