"""docs/openapi.json is the app's schema: the typed client (web/src/api.d.ts) is generated from
it, so a route or model changed without regenerating it fails here."""

from __future__ import annotations

import json

from devtools.openapi import OPENAPI_PATH, REGENERATE, render


def test_the_exported_openapi_document_matches_the_app() -> None:
    exported = OPENAPI_PATH.read_text(encoding="utf-8") if OPENAPI_PATH.exists() else ""
    assert exported == render(), f"{OPENAPI_PATH} differs from the app: run `{REGENERATE}`"


def test_every_error_response_is_declared_as_a_problem_document() -> None:
    """Clients (and the typed client) read errors as `application/problem+json`, the type the
    handlers send, never as `application/json`."""
    document = json.loads(render())
    declared = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                where = f"{method.upper()} {path} {status}"
                assert list(response["content"]) == ["application/problem+json"], where
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, where
                declared += 1
    assert declared > 100
