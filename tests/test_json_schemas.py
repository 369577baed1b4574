"""Item 3 of issue 7, for every tool: a --json option and a schema file that is
valid JSON Schema (docs/json.md). A tool without them fails here by design."""
import importlib
import json

import click
import jsonschema
import pytest

from pytracekit.cli.command import tool_names

from schema_check import SCHEMAS

# Tools whose JSON is a file they write rather than lines on stdout (none now:
# record writes its file and prints a summary line with --json).
JSON_IN_A_FILE: dict[str, str] = {}


@pytest.mark.parametrize("name", tool_names())
def test_every_tool_has_a_valid_schema(name):
    path = SCHEMAS / f"{name}.schema.json"
    assert path.exists(), f"pytracekit/schemas/{name}.schema.json missing (see docs/json.md)"
    schema = json.loads(path.read_text())
    jsonschema.validators.validator_for(schema).check_schema(schema)
    assert schema.get("$schema", "").startswith("https://json-schema.org/"), name
    assert schema.get("title"), f"{name}: give the schema a title saying what it describes"


@pytest.mark.parametrize("name", tool_names())
def test_every_tool_has_a_json_option(name):
    if name in JSON_IN_A_FILE:
        pytest.skip(JSON_IN_A_FILE[name])
    command = importlib.import_module(f"pytracekit.tools.{name}").command
    if isinstance(command, click.Group):   # every subcommand then
        commands = list(command.commands.values())
    else:
        commands = [command]
    for cmd in commands:
        opts = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
        assert "--json" in opts, f"{cmd.name}: no --json option"


def test_schemas_are_named_after_tools():
    """A schema whose tool is gone (or misspelled) is caught too."""
    names = set(tool_names())
    orphans = [p.name for p in SCHEMAS.glob("*.schema.json")
               if p.name.removesuffix(".schema.json") not in names]
    assert orphans == []


def _loss_objects(node):
    """Every object schema in `node` that describes a LossReport (it lists
    unreadable_strings, the newest field every loss object had)."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict) and "unreadable_strings" in props:
            yield props
        for value in node.values():
            yield from _loss_objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _loss_objects(value)


@pytest.mark.parametrize("name", tool_names())
def test_every_loss_object_lists_every_loss_counter(name):
    # LossReport.as_dict() is what every tool prints; a schema that forbids
    # other properties must name each of its counters (unwind_* came later)
    from pytracekit.model import LossReport
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    for props in _loss_objects(schema):
        assert set(LossReport().as_dict()) <= set(props), (name, set(LossReport().as_dict())
                                                           - set(props))
