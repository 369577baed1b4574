"""The shared --json check: every line of a tool's output is one JSON object
that validates against pytracekit/schemas/<tool>.schema.json (see docs/json.md)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema

SCHEMAS = Path(__file__).resolve().parent.parent / "pytracekit" / "schemas"
_VALIDATORS: dict[int, tuple[dict, object]] = {}


def validate(obj: object, schema: dict) -> None:
    """jsonschema.validate(obj, schema), without checking the schema itself anew
    at every call (that check was most of its time: ~30 ms a line under load)."""
    schema_and_validator = _VALIDATORS.get(id(schema))
    if schema_and_validator is None or schema_and_validator[0] is not schema:
        if len(_VALIDATORS) > 64:   # callers load a schema per output: keep the recent
            _VALIDATORS.clear()
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        schema_and_validator = _VALIDATORS[id(schema)] = (schema, cls(schema))
    error = jsonschema.exceptions.best_match(schema_and_validator[1].iter_errors(obj))
    if error is not None:
        raise error


def schema_of(tool: str) -> dict:
    schema = json.loads((SCHEMAS / f"{tool}.schema.json").read_text())
    jsonschema.validators.validator_for(schema).check_schema(schema)
    return schema


def validate_lines(stdout: str, tool: str, *, require_type: bool = True) -> list[dict]:
    """Parsed objects of `stdout` (one per non-empty line), each validated; with
    `require_type` each must also carry the `type` field the conventions ask for."""
    schema = schema_of(tool)
    validator = jsonschema.validators.validator_for(schema)(schema)
    objs = []
    for number, line in enumerate(stdout.splitlines(), 1):
        if not line.strip():
            continue
        obj = json.loads(line)
        assert isinstance(obj, dict), f"{tool} line {number} is not an object: {line}"
        errors = sorted(validator.iter_errors(obj), key=lambda e: e.path)
        assert not errors, f"{tool} line {number}: {errors[0].message}\n{line}"
        if require_type:
            assert isinstance(obj.get("type"), str), f"{tool} line {number} has no type: {line}"
        objs.append(obj)
    return objs
