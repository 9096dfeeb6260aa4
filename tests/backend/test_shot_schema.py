"""The checked-in JSON Schema of shot.json is the one the pydantic models generate, and it accepts real metadata."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from support.synthetic import synthetic_parts
from trajplate.shot import json_schema, json_schema_text

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "shot.schema.json"


def test_checked_in_schema_matches_the_models():
    assert SCHEMA.read_text() == json_schema_text(), (
        "docs/shot.schema.json is stale: run `python -m trajplate.shot --schema > docs/shot.schema.json`"
    )


def test_schema_accepts_exported_metadata_and_refuses_bad_values():
    schema = json.loads(SCHEMA.read_text())
    assert schema == json_schema()
    meta, _, _ = synthetic_parts()
    jsonschema.validate(meta, schema)
    meta["entities"][0]["color"] = [255, 0, 300]
    try:
        jsonschema.validate(meta, schema)
    except jsonschema.ValidationError as error:
        assert list(error.absolute_path) == ["entities", 0, "color", 2]
    else:
        raise AssertionError("the schema accepted a colour channel of 300")
