"""JSON Schemas of the public contract, generated from the pydantic models so that the
files in `schemas/` and the code cannot drift apart (a test compares them)."""

from __future__ import annotations

from typing import Any

from streamdrift.events import Alert, LabelEvent, PredictionEvent
from streamdrift.profile import ReferenceProfile

SCHEMA_ID = "https://streamdrift.dev/schemas/{name}.schema.json"


def all_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for name, model in (
        ("prediction", PredictionEvent),
        ("label", LabelEvent),
        ("alert", Alert),
        ("reference-profile", ReferenceProfile),
    ):
        schema = model.model_json_schema()
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_ID.format(name=name),
            **schema,
        }
        out[name] = schema
    return out
