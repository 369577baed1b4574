"""doctor --json follows pytracekit/schemas/doctor.schema.json."""
import pytest

from conftest import pytracekit
from schema_check import validate_lines


@pytest.mark.root
def test_doctor_json_follows_the_schema():
    res = pytracekit("doctor", "--json")
    objs = validate_lines(res.stdout, "doctor")
    features = {o["feature"]: o["available"] for o in objs}
    assert features["BTF"] is True and features["tracefs"] is True
    assert res.returncode == 0, res.stderr
