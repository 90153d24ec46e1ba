"""Google Cloud API schemas, offline: the discovery documents google-api-python-client ships.

Specs for Cloud Run and Vertex AI are checked against the API's own field names and value
types, so a misspelt or misplaced field fails a test instead of a deployment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def discovery_schemas(api: str) -> dict:
    """The ``schemas`` of a discovery document such as ``run.v1`` or ``aiplatform.v1``."""
    googleapiclient = pytest.importorskip("googleapiclient")
    path = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / f"{api}.json"
    return json.loads(path.read_text(encoding="utf-8"))["schemas"]


def schema_errors(value, schema: dict, schemas: dict, where: str = "") -> list[str]:
    """Every key the schema does not define and every value of the wrong JSON type.

    Discovery documents write int64 fields as strings, which the APIs also accept as
    numbers; both pass here.
    """
    if "$ref" in schema:
        return schema_errors(value, schemas[schema["$ref"]], schemas, where)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r}"]
        if "properties" in schema:
            errors = []
            for key, item in value.items():
                if key not in schema["properties"]:
                    errors.append(f"{where}.{key}: not a field of this object")
                else:
                    errors += schema_errors(item, schema["properties"][key], schemas, f"{where}.{key}")
            return errors
        extra = schema.get("additionalProperties", {})
        return [e for key, item in value.items() for e in schema_errors(item, extra, schemas, f"{where}.{key}")]
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [e for i, item in enumerate(value) for e in schema_errors(item, schema["items"], schemas, f"{where}[{i}]")]
    if kind == "string" and schema.get("format") in ("int64", "uint64"):
        ok = isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.lstrip("-").isdigit()
        return [] if ok else [f"{where}: expected an integer, got {value!r}"]
    if kind == "string" and "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {', '.join(schema['enum'])}"]
    expected = {"string": str, "integer": int, "boolean": bool, "number": (int, float)}.get(kind)
    if expected and (not isinstance(value, expected) or (kind == "integer" and isinstance(value, bool))):
        return [f"{where}: expected {kind}, got {value!r}"]
    return []
