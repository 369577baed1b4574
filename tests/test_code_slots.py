"""Where generated C goes into bpf/ programs: one spelling, `code_slot(NAME)`
("/* PTK_SLOT NAME */"), on both sides, and a slot the file lacks is an error."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pytracekit.engine.loader import Program, code_slot
from pytracekit.errors import PytracekitError

ROOT = Path(__file__).resolve().parent.parent
BPF = sorted((ROOT / "bpf").glob("*.[ch]"))
# spellings generated code was once spliced at: @NAME@, /*NAME*/, /* NAME */ alone on a line
OTHER_SPELLINGS = re.compile(r"^\s*(@[A-Z][A-Z0-9_]*@|/\*\s*[A-Z][A-Z0-9_]*\s*\*/)\s*$", re.M)
SLOT = re.compile(r"/\*\s*PTK_SLOT\b[^*]*\*/")


def slot_names_used() -> set[str]:
    """NAME of every code_slot("NAME") call in the package."""
    names = set()
    for path in (ROOT / "pytracekit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "code_slot"):
                assert isinstance(node.args[0], ast.Constant), f"{path}: a slot name is a literal"
                names.add(node.args[0].value)
    return names


def test_bpf_sources_spell_every_slot_one_way():
    others = [f"{p.name}: {m.group(1)}" for p in BPF for m in OTHER_SPELLINGS.finditer(p.read_text())]
    assert others == []
    slots = {m.group(0) for p in BPF for m in SLOT.finditer(p.read_text())}
    assert slots == {code_slot(name) for name in slot_names_used()}


def test_python_spells_no_token_by_hand():
    by_hand = []
    for path in (ROOT / "pytracekit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and (OTHER_SPELLINGS.fullmatch(node.value) or SLOT.fullmatch(node.value))):
                by_hand.append(f"{path.relative_to(ROOT)}: {node.value}")
    assert by_hand == []


def test_a_slot_the_program_lacks_is_an_error():
    with pytest.raises(PytracekitError, match=r"bpf/trace.bpf.c has no /\* PTK_SLOT NOPE \*/"):
        Program.from_file("trace", replace={code_slot("NOPE"): "int x;"})
