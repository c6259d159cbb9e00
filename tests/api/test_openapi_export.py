"""docs/openapi.json is the app's schema: the typed client (web/src/api.d.ts) is generated from
it, so a route or model changed without regenerating it fails here."""

from __future__ import annotations

from devtools.openapi import OPENAPI_PATH, REGENERATE, render


def test_the_exported_openapi_document_matches_the_app() -> None:
    exported = OPENAPI_PATH.read_text(encoding="utf-8") if OPENAPI_PATH.exists() else ""
    assert exported == render(), f"{OPENAPI_PATH} differs from the app: run `{REGENERATE}`"
