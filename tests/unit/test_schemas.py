"""The JSON Schemas in schemas/ are exactly those of the code's pydantic models, and
they accept the contract's documented examples."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest

from streamdrift.schemas import all_schemas

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@pytest.mark.parametrize("name", sorted(all_schemas()))
def test_schema_file_matches_the_code(name):
    on_disk = orjson.loads((SCHEMAS / f"{name}.schema.json").read_bytes())
    assert on_disk == all_schemas()[name], f"run `make schemas` to regenerate {name}"


def test_no_stray_schema_files():
    assert {p.name for p in SCHEMAS.glob("*.json")} == {f"{n}.schema.json" for n in all_schemas()}


def test_documented_examples_validate():
    schemas = all_schemas()
    prediction = {
        "prediction_id": "a1b2",
        "model_id": "fraud",
        "model_version": "3.1.0",
        "timestamp": "2026-11-22T10:00:00Z",
        "features": {"amount": 120.5, "country": "DE", "age": None},
        "prediction": {"score": 0.83, "label": 1},
        "segments": {"region": "EU"},
    }
    jsonschema.validate(prediction, schemas["prediction"])
    jsonschema.validate(
        {**prediction, "timestamp": 1763805600, "prediction": 12.5}, schemas["prediction"]
    )
    label = {
        "prediction_id": "a1b2",
        "model_id": "fraud",
        "label": 0,
        "timestamp": "2026-12-20T08:00:00Z",
    }
    jsonschema.validate(label, schemas["label"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {k: v for k, v in prediction.items() if k != "features"}, schemas["prediction"]
        )
