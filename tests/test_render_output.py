"""render/output.py: one record, written in the form chosen once; the loss by
one printer. Pure logic: the three forms side by side on the same records."""
import json

import pytest

from pytracekit.errors import UsageError
from pytracekit.model import Counts, Frame, Histogram, LossReport, Sample, StackProfile
from pytracekit.render import output

FORMS = {"text": output.chosen(), "json": output.chosen(json=True),
         "folded": output.chosen(folded=True)}


def written(capsys, form, record):
    record(FORMS[form])
    got = capsys.readouterr()
    return got.out, got.err


@pytest.mark.parametrize("form, expected", [
    ("text", "NAME  COUNT\nb         3\na         1\n"),
    ("folded", "NAME  COUNT\nb         3\na         1\n"),      # no folded form: the text
    ("json", '{"type":"count","NAME":"b","count":3,"time":"t"}\n'
             '{"type":"count","NAME":"a","count":1,"time":"t"}\n'),
])
def test_counts_in_each_form(capsys, form, expected):
    counts = Counts(("NAME",), {("a",): 1, ("b",): 3})
    assert written(capsys, form, lambda out: out.counts(counts, time="t")) == (expected, "")


def test_a_histogram_with_its_text_and_its_json_fields(capsys):
    hist = Histogram({1: 2, 3: 1}, unit="usecs", label="f")
    out, _ = written(capsys, "text", lambda o: o.histogram(hist, text=lambda h: f"n={h.total}",
                                                           sum=9))
    assert out == "n=3\n"
    out, _ = written(capsys, "json", lambda o: o.histogram(hist, sum=9))
    obj = json.loads(out)
    assert (obj["type"], obj["total"], obj["sum"], len(obj["buckets"])) == ("histogram", 3, 9, 2)


def test_lines_for_people_are_text_only(capsys):
    for form, expected in (("text", "HEADER\n\n"), ("json", ""), ("folded", "")):
        assert written(capsys, form, lambda o: (o.line("HEADER"), o.line()))[0] == expected


def test_stacks_folded_json_and_text(capsys):
    stack = (Frame("w", "process"), Frame("main"), Frame("leaf"))
    profile = StackProfile([Sample(stack, 2, pid=7, comm="w"), Sample(stack[:2], 5, pid=7,
                                                                      comm="w")])

    def record(out):
        out.stacks(profile, tool="t", text=lambda p: f"{len(p.samples)} stacks",
                   folded=lambda p: [f"x {s.value}" for s in p.samples])
    assert written(capsys, "text", record)[0] == "2 stacks\n"
    assert written(capsys, "folded", record)[0] == "x 2\nx 5\n"
    objs = [json.loads(l) for l in written(capsys, "json", record)[0].splitlines()]
    assert [o["type"] for o in objs] == ["profile", "stack", "stack"]
    assert [o["value"] for o in objs[1:]] == [5, 2]          # biggest first


def test_events_count_the_lines_written_and_mark_json_objects(capsys):
    rows = [(1,), (2,)]
    text = lambda rows: [f"row {r[0]}" for r in rows]       # noqa: E731
    obj = lambda rows: [{"n": r[0]} for r in rows]          # noqa: E731
    assert FORMS["text"].events(rows, text=text, obj=obj) == 2
    assert FORMS["json"].events(rows, text=text, obj=obj) == 2
    assert FORMS["folded"].events(rows, text=text, obj=obj, folded=lambda r: ["a;b 1"]) == 1
    assert capsys.readouterr().out == ('row 1\nrow 2\n{"type":"event","n":1}\n'
                                       '{"type":"event","n":2}\na;b 1\n')


def test_the_loss_is_one_json_line_and_a_warning_in_every_form(capsys):
    loss = LossReport(lost_events=3)
    out, err = written(capsys, "json", lambda o: o.loss(loss, captured=5))
    assert json.loads(out) == {"type": "loss", **loss.as_dict(), "captured": 5}
    assert err.startswith("WARNING: 3 events lost")
    for form in ("text", "folded"):
        out, err = written(capsys, form, lambda o: o.loss(loss))
        assert out == "" and err.startswith("WARNING: 3 events lost")
    assert written(capsys, "text", lambda o: o.loss(LossReport())) == ("", "")


def test_forms_computed_only_when_chosen(capsys):
    def boom():
        raise AssertionError("computed a form that is not written")
    FORMS["text"].emit(text="t", json=boom)
    FORMS["json"].emit(text=boom, json={"a": 1})
    assert capsys.readouterr().out == 't\n{"a":1}\n'


def test_one_form_only_and_refusals():
    with pytest.raises(UsageError, match="--folded and --json exclude each other"):
        output.chosen(json=True, folded=True)
    with pytest.raises(UsageError, match="-j/-J and --json exclude each other"):
        FORMS["json"].text_only("-j/-J")
    FORMS["text"].text_only("-j/-J")
    with pytest.raises(UsageError, match="needs stacks"):
        FORMS["folded"].refuse("folded", "needs stacks")
    FORMS["text"].refuse("folded", "needs stacks")


def test_output_options_hand_the_tool_one_output():
    import click
    from click.testing import CliRunner
    from pytracekit.cli import options

    @click.command()
    @options.output_options("-f")
    def tool(out):
        click.echo(out.form)
    runner = CliRunner()
    assert [runner.invoke(tool, args).output for args in ([], ["--json"], ["-f"])] == \
        ["text\n", "json\n", "folded\n"]
    both = runner.invoke(tool, ["--json", "--folded"])
    assert isinstance(both.exception, UsageError)
    assert [p.name for p in tool.params] == ["as_json", "folded"]   # click's names as before
