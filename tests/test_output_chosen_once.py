"""The output is chosen once (render/output.py): `options.output_options` turns
--json/--folded into one `Output` handed to the tool as `out`, and the tools and
their families emit records without asking which form is on. This test reads
their source: no `as_json`/`json_out` names, no test (`if`, `... if ... else`,
`while`, `and`/`or`) on a name that speaks of JSON or folding or on
`out.form`, and --json/--folded made nowhere but through output_options.
The loss is printed by one piece of code, `Output.loss`: no tool or family
writes the loss warning (render.text.loss_line) or a "loss" object itself.

NOT_CONVERTED only shrinks: a module on it that passes fails the stale test."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pytracekit"
SCANNED = sorted([*PACKAGE.joinpath("tools").glob("*.py"),
                  *PACKAGE.joinpath("families").glob("*.py")])

FORBIDDEN_NAMES = {"as_json", "json_out"}
FORMAT_WORDS = ("json", "folded")

# Modules still branching on the format, to convert (then take them off).
NOT_CONVERTED: set[str] = set()   # every tool and family is converted


def _identifiers(node: ast.AST) -> set[str]:
    """Every name and attribute name read in an expression."""
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
    return found


def _speaks_of_format(names: set[str]) -> set[str]:
    return {n for n in names if n == "form" or any(w in n.lower() for w in FORMAT_WORDS)}


def branches_on_format(path: Path) -> list[str]:
    """What in the module chooses by the output format, as `line: what`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.arg) and node.arg in FORBIDDEN_NAMES:
            found.append(f"{line}: parameter {node.arg}")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            found.append(f"{line}: name {node.id}")
        elif isinstance(node, ast.keyword) and node.arg in FORBIDDEN_NAMES:
            found.append(f"{line}: keyword {node.arg}=")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_NAMES and \
                isinstance(node.ctx, ast.Store):
            found.append(f"{line}: attribute {node.attr}")
        elif isinstance(node, (ast.If, ast.IfExp, ast.While)):
            if words := _speaks_of_format(_identifiers(node.test)):
                found.append(f"{line}: tests {', '.join(sorted(words))}")
        elif isinstance(node, ast.BoolOp):
            if words := _speaks_of_format(_identifiers(node)):
                found.append(f"{line}: and/or on {', '.join(sorted(words))}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("json_option", "folded_option"):
            found.append(f"{line}: --json/--folded made by {node.func.attr}, "
                         "not options.output_options")
    return found


def prints_loss_itself(path: Path) -> list[str]:
    """Where the module writes the loss warning or builds a "loss" object."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and "loss_line" in _identifiers(node.func):
            found.append(f"{node.lineno}: loss_line")
        elif isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant) and k.value == "type" and
                isinstance(v, ast.Constant) and v.value == "loss"
                for k, v in zip(node.keys, node.values)):
            found.append(f"{node.lineno}: a \"loss\" object")
    return found


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def test_the_scan_finds_what_it_forbids(tmp_path):
    sample = tmp_path / "t.py"
    sample.write_text("def command(as_json, folded):\n"
                      "    if folded or x:\n        pass\n"
                      "    y = 1 if out.form == 'json' else 2\n"
                      "    options.json_option()\n")
    found = branches_on_format(sample)
    assert sorted(f.split(":")[0] for f in found) == ["1", "2", "2", "4", "5"], found
    clean = tmp_path / "c.py"
    clean.write_text("def command(out, timestamp):\n"
                     "    if timestamp:\n        out.line(stamp)\n"
                     "    out.counts(c, text=lambda c: table(c) if c.rows else None)\n")
    assert branches_on_format(clean) == []


@pytest.mark.parametrize("path", [p for p in SCANNED if _name(p) not in NOT_CONVERTED],
                         ids=_name)
def test_tools_emit_records_without_choosing_the_format(path):
    found = branches_on_format(path)
    assert not found, (f"{_name(path)} chooses by the output format: {found}; take `out` "
                       "(options.output_options) and emit records (render/output.py)")


@pytest.mark.parametrize("path", [p for p in SCANNED if _name(p) not in NOT_CONVERTED],
                         ids=_name)
def test_the_loss_is_printed_by_the_output(path):
    found = prints_loss_itself(path)
    assert not found, (f"{_name(path)} prints the loss itself: {found}; use out.loss(loss) "
                       "(render/output.py), the one loss printer")


def test_the_loss_scan_finds_what_it_forbids(tmp_path):
    sample = tmp_path / "t.py"
    sample.write_text("warn(text.loss_line(loss))\nx = {'type': 'loss', **d}\n"
                      "out.loss(loss)\n")
    assert [f.split(":")[0] for f in prints_loss_itself(sample)] in (["1", "2"], ["2", "1"])


def test_not_converted_list_only_shrinks():
    names = {_name(p) for p in SCANNED}
    assert NOT_CONVERTED <= names, f"no such modules: {NOT_CONVERTED - names}"
    stale = sorted(n for n in NOT_CONVERTED if not branches_on_format(PACKAGE / n)
                   and not prints_loss_itself(PACKAGE / n))
    assert not stale, f"{stale} are converted: take them off NOT_CONVERTED"
