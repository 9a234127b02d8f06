"""`sagepipe schema`: the JSON Schema of a pipeline file, built from the pydantic models, for editors.

An editor (VS Code's YAML extension, JetBrains, ...) given this schema completes keys and flags typos. Where
a number or a boolean is expected, a reference string (`${params.x}`) is accepted too, as the loader does.
"""

from __future__ import annotations

from typing import Any

SCHEMA_ID = "https://sagepipe.dev/schemas/pipeline.json"
REF_PATTERN = r"^\$\{[^}]+\}$"


def _generator() -> Any:
    from pydantic.json_schema import GenerateJsonSchema

    class Lenient(GenerateJsonSchema):
        """Parsed reference objects (arbitrary types) place no constraint in the schema."""

        def handle_invalid_for_json_schema(self, schema: Any, error_info: str) -> dict[str, Any]:
            return {}

    return Lenient


def _model_schema(model: Any, defs: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(schema_generator=_generator(), ref_template="#/$defs/{model}")
    defs.update(schema.pop("$defs", {}))
    return schema


def _allow_refs(node: Any) -> Any:
    """A number, integer or boolean may also be written as a `${...}` reference."""
    if isinstance(node, list):
        return [_allow_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _allow_refs(value) for key, value in node.items()}
    if node.get("type") in ("number", "integer", "boolean"):
        constraint = {k: v for k, v in node.items() if k not in ("title", "description", "default")}
        kept = {k: v for k, v in node.items() if k in ("title", "description", "default")}
        return {**kept, "anyOf": [constraint, {"type": "string", "pattern": REF_PATTERN}]}
    return node


def pipeline_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a pipeline YAML file."""
    from pipelines.spec import Defaults, Parameter
    from steps import STEP_TYPES

    defs: dict[str, Any] = {}
    defs["Parameter"] = _model_schema(Parameter, defs)
    defs["Defaults"] = _model_schema(Defaults, defs)
    branches = []
    for kind, model in STEP_TYPES.items():
        name = f"step_{kind}"
        step = _model_schema(model, defs)
        properties = step.get("properties", {})
        if "depends_on" in properties:  # one name or a list of names
            properties["depends_on"] = {"anyOf": [{"type": "string"}, properties["depends_on"]]}
        if properties.get("outputs", {}).get("type") == "object":  # `outputs: [a, b]` names them only
            properties["outputs"] = {"anyOf": [{"type": "array", "items": {"type": "string"}}, properties["outputs"]]}
        defs[name] = step
        branches.append({"if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                         "then": {"$ref": f"#/$defs/{name}"}})
    if "Cache" in defs:  # `cache: false` is short for `cache: {enabled: false}`
        defs["Cache"] = {"anyOf": [{"type": "boolean"}, defs["Cache"]]}
    version = defs.get("FrameworkImage", {}).get("properties", {}).get("version")
    if version:  # `version: 2.1` (a YAML number) is read as text
        version["anyOf"] = [*version.get("anyOf", []), {"type": "number"}]
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "sagepipe pipeline",
        "description": "A sagepipe pipeline file (configs/*.yaml); see `sagepipe validate` for every check.",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "steps"],
        "properties": {
            "name": {"type": "string", "pattern": r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,255}$"},
            "description": {"type": "string"},
            "parameters": {"type": "object", "additionalProperties": {"$ref": "#/$defs/Parameter"}},
            "defaults": {"$ref": "#/$defs/Defaults"},
            "steps": {
                "type": "array", "minItems": 1,
                "items": {"type": "object", "required": ["name", "type"],
                          "properties": {"type": {"enum": sorted(STEP_TYPES)}}, "allOf": branches},
            },
        },
        "$defs": defs,
    }
    return _allow_refs(schema)
