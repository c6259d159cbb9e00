"""Load the compiled contract (Hardhat artifacts: ABI, bytecode) that Python deploys and
decodes with. `npx hardhat compile` writes them under the checkout's `artifacts/`."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACTS_DIR = Path(__file__).resolve().parents[2] / "artifacts" / "contracts"


@cache
def load_artifact(name: str = "AutoPool", source: str | None = None) -> dict[str, Any]:
    """The Hardhat artifact of contract `name` (from `contracts/<source or name>.sol`)."""
    path = ARTIFACTS_DIR / f"{source or name}.sol" / f"{name}.json"
    if not path.exists():
        raise RuntimeError(f"{path} missing: run `npx hardhat compile` first")
    data: dict[str, Any] = json.loads(path.read_text())
    return data
