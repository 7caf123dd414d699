"""`GET .../{name}/openapi`: an OpenAPI 3.1 document of one endpoint's invocations.

Built from the served models' MLflow signatures, one path per served entity
(`/served-models/{served}/invocations`), as Databricks does. Pure: the signatures are read
beforehand on the registry's thread, so nothing here imports MLflow.
"""

from __future__ import annotations

from typing import Any

_COLUMN_TYPES: dict[str, dict[str, Any]] = {
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer", "format": "int32"},
    "long": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "float"},
    "double": {"type": "number", "format": "double"},
    "string": {"type": "string"},
    "binary": {"type": "string", "contentEncoding": "base64"},
    "datetime": {"type": "string", "format": "date-time"},
}
_TENSOR_TYPES = {
    "b": "boolean",
    "i": "integer",
    "u": "integer",
    "f": "number",
    "U": "string",
    "S": "string",
    "O": "string",
}


def _column(spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec.get("type")
    if kind == "tensor":
        return _tensor(spec.get("tensor-spec") or {})
    if kind == "array":
        return {"type": "array", "items": _column(spec.get("items") or {})}
    if kind == "object":
        # MLflow's Object.to_dict keys each property by its name (the spec has no "name" field).
        props = (
            {name: _column(p) for name, p in spec["properties"].items()}
            if isinstance(spec.get("properties"), dict)
            else {}
        )
        return {"type": "object", "properties": props}
    return dict(_COLUMN_TYPES.get(str(kind), {}))


def _tensor(spec: dict[str, Any]) -> dict[str, Any]:
    dtype = str(spec.get("dtype", ""))
    scalar: dict[str, Any] = {"type": _TENSOR_TYPES.get(dtype[:1], "number")} if dtype else {}
    shape = spec.get("shape") or [-1]
    schema = scalar
    for _ in shape[1:]:
        schema = {"type": "array", "items": schema}
    return schema


def _request_schema(inputs: list[dict[str, Any]] | None) -> dict[str, Any]:
    if not inputs:
        return {
            "type": "object",
            "description": "The model has no input signature: any MLflow scoring input.",
        }
    if all(spec.get("type") == "tensor" for spec in inputs):
        named = {
            s.get("name", f"input{i}"): _tensor(s.get("tensor-spec") or {}) for i, s in enumerate(inputs)
        }
        row = next(iter(named.values())) if len(named) == 1 else {"type": "object", "properties": named}
        rows = {"type": "array", "items": row}
        return {
            "oneOf": [
                {"type": "object", "properties": {"instances": rows}, "required": ["instances"]},
                {"type": "object", "properties": {"inputs": rows}, "required": ["inputs"]},
            ]
        }
    names = [spec.get("name", f"_{i}") for i, spec in enumerate(inputs)]
    record = {
        "type": "object",
        "properties": {name: _column(spec) for name, spec in zip(names, inputs, strict=True)},
        "required": [n for n, spec in zip(names, inputs, strict=True) if spec.get("required", True)],
    }
    split = {
        "type": "object",
        "properties": {
            "columns": {"type": "array", "items": {"type": "string", "enum": names}},
            "data": {"type": "array", "items": {"type": "array"}},
        },
        "required": ["data"],
    }
    return {
        "oneOf": [
            {"type": "object", "properties": {"dataframe_split": split}, "required": ["dataframe_split"]},
            {
                "type": "object",
                "properties": {"dataframe_records": {"type": "array", "items": record}},
                "required": ["dataframe_records"],
            },
        ]
    }


def _response_schema(outputs: list[dict[str, Any]] | None) -> dict[str, Any]:
    if not outputs:
        item: dict[str, Any] = {}
    elif len(outputs) == 1 and "name" not in outputs[0]:
        item = _column(outputs[0])
    else:
        item = {
            "type": "object",
            "properties": {o.get("name", f"_{i}"): _column(o) for i, o in enumerate(outputs)},
        }
    return {
        "type": "object",
        "properties": {"predictions": {"type": "array", "items": item}},
        "required": ["predictions"],
    }


def endpoint_openapi(
    name: str, server_url: str, served: list[tuple[str, dict[str, Any] | None]]
) -> dict[str, Any]:
    """The document; `served` is (served entity name, its signature or None) in config order."""
    paths: dict[str, Any] = {}
    for served_name, signature in served:
        signature = signature or {}
        paths[f"/served-models/{served_name}/invocations"] = {
            "post": {
                "operationId": f"query-{served_name}",
                "summary": f"Query served entity '{served_name}' of endpoint '{name}'",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _request_schema(signature.get("inputs"))}},
                },
                "responses": {
                    "200": {
                        "description": "Successful operation",
                        "content": {
                            "application/json": {"schema": _response_schema(signature.get("outputs"))}
                        },
                    }
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": name,
            "version": "2.0.0",
            "description": f"Invocations of serving endpoint '{name}'.",
        },
        "servers": [{"url": f"{server_url.rstrip('/')}/serving-endpoints/{name}"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }
