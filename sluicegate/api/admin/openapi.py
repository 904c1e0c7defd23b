"""The admin API described as an OpenAPI 3.1 document, built from the route table and the
pydantic models, so the description cannot drift from what the handlers accept.

Paths are listed under the admin prefix (``/admin/key/generate``); the same routes may also
be served at the root (``admin.root_paths``), which the document does not repeat."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

from sluicegate import __version__
from sluicegate.api.admin.base import Route
from sluicegate.api.admin.views import ErrorResponse

_REF = "#/components/schemas/{model}"
_ERRORS = {
    400: "Invalid request (the message names the field).",
    401: "Missing or wrong admin token.",
    403: "The token has the read scope and the route writes, or the admin API is off "
    "(no admin token in the configuration).",
    404: "No such key or partner.",
    409: "Conflicts with the current state (a partner with active keys, a revoked key).",
    413: "Request body too large.",
    414: "The request target (path and query string) is longer than 8 KiB.",
}
_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


class _Schemas:
    """Collects component schemas; returns ``$ref`` objects."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: Literal["validation", "serialization"]) -> Any:
        schema = model.model_json_schema(ref_template=_REF, mode=mode)
        self.components.update(schema.pop("$defs", {}))
        name = model.__name__
        self.components[name] = schema
        return {"$ref": _REF.format(model=name)}

    def parameters(self, model: type[BaseModel]) -> list[dict[str, Any]]:
        schema = model.model_json_schema(ref_template=_REF, mode="validation")
        required = set(schema.get("required", []))
        params = []
        for name, prop in schema.get("properties", {}).items():
            description = prop.pop("description", None)
            prop.pop("title", None)
            if prop.get("default", "") is None:
                del prop["default"]  # absent from the query string
            options = [o for o in prop.pop("anyOf", []) if o != {"type": "null"}]
            if len(options) == 1:
                prop.update(options[0])
            elif options:
                prop["anyOf"] = options
            param: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": prop,
            }
            if description:
                param["description"] = description
            if name not in required:
                # A blank value counts as absent (base.query_params): say so, or a client
                # (or a schema-driven test) takes ``?partner=`` for an invalid request.
                param["allowEmptyValue"] = True
            params.append(param)
        return params


def _operation(route: Route, schemas: _Schemas) -> dict[str, Any]:
    scope = "any admin token" if route.method == "GET" else "a full-scope admin token"
    op: dict[str, Any] = {
        "operationId": route.method.lower() + route.path.replace("/", "_").replace(".", "_"),
        "summary": route.summary,
        "tags": list(route.tags),
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    "application/json": {"schema": schemas.ref(route.response, "serialization")}
                },
            }
        },
    }
    if route.query is not None:
        op["parameters"] = schemas.parameters(route.query)
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.ref(route.body, "validation")}},
        }
    codes = set(route.errors) | ({413} if route.body is not None else set())
    if route.query is not None:  # a query string can push the target past the HTTP limit
        codes.add(414)
    if route.public:
        codes -= {401, 403}
        op["security"] = []
    else:
        op["description"] = f"Needs {scope}."
        op["security"] = _SECURITY
    error = schemas.ref(ErrorResponse, "serialization")
    for code in sorted(codes):
        op["responses"][str(code)] = {
            "description": _ERRORS.get(code, "Error"),
            "content": {"application/json": {"schema": error}},
        }
    return op


def openapi_document(routes: Sequence[Route], prefix: str = "") -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _operation(route, schemas)
        paths.setdefault(prefix + route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sluicegate admin API",
            "version": __version__,
            "description": "Keys, partners, limits, budgets, usage and the audit log of a "
            "sluicegate gateway. Authenticate with an admin token (admin_token or "
            "admin.tokens; Authorization: Bearer or x-api-key): a read-scope token may call "
            "the GET routes, a full-scope token every route. Every write is audited.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an admin token"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
        "security": _SECURITY,
    }
