"""Export the API's OpenAPI document to `docs/openapi.json`, the source of the typed client.

`python -m devtools.openapi` writes it (sorted keys, two-space indent, trailing newline, so the
same app always gives the same bytes); `--check` exits 1 when the file differs from the app.
`make compile` generates the TypeScript types (`web/src/api.d.ts`) from this file, and
`tests/api/test_openapi_export.py` fails when it drifts from the app.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

# siwe's grammar redefines core ABNF rules when backend.auth imports it (harmless; abnf 2.8)
warnings.filterwarnings("ignore", message="rule '.*' redefines")

from backend.app import create_app  # noqa: E402
from backend.core.settings import Settings  # noqa: E402

OPENAPI_PATH = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"
REGENERATE = "python -m devtools.openapi"


def render() -> str:
    """The app's OpenAPI document as exported: the routes do not depend on the settings, and
    the lifespan (databases, chain) is not started."""
    app = create_app(Settings(_env_file=None))  # type: ignore[call-arg]
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    parser.add_argument("--output", type=Path, default=OPENAPI_PATH)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            sys.exit(f"{args.output} is out of date: run `{REGENERATE}`")
        return
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
