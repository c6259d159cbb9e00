"""Property-based fuzzing of the OpenAPI schema (schemathesis): every operation, called as a
participant and as an admin with generated input, answers without a 5xx and with a response
its schema declares. The app runs on a real chain node with a contract address that holds no
code, and signs in process."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from eth_account import Account
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.app import create_app
from backend.core.security import Principal, Role, TokenCodec
from backend.core.settings import Settings
from devtools.anvil import AnvilNode
from devtools.processes import free_port
from tests.api.conftest import LocalSigner, offline_settings

# Per operation and role. CI runs a fixed sequence (derandomized: a red build is reproducible);
# AUTOPOOL_FUZZ_EXAMPLES=500 AUTOPOOL_FUZZ_RANDOM=1 digs deeper, differently each run.
EXAMPLES = int(os.environ.get("AUTOPOOL_FUZZ_EXAMPLES", "8"))
RANDOM = bool(os.environ.get("AUTOPOOL_FUZZ_RANDOM"))


@pytest.fixture(scope="module")
def fuzz_server(offline_app: Any, database_url: str, anvil: AnvilNode) -> Iterator[str]:
    """A second copy of the offline app (same seeded database) on a real chain node, served
    by uvicorn on its own thread and event loop, as a deployment would serve it."""
    app = create_app(offline_settings(database_url, anvil.rpc_url), signer=LocalSigner())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the fuzzed API did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def tokens(database_url: str) -> dict[str, dict[str, str]]:
    codec = TokenCodec(offline_settings(database_url).jwt_secret.get_secret_value(), 600)

    def bearer(*roles: Role) -> dict[str, str]:
        principal = Principal(
            1, Account.create().address, frozenset({Role.PARTICIPANT, *roles}), "f"
        )
        return {"Authorization": f"Bearer {codec.issue(principal)}"}

    return {"participant": bearer(), "admin": bearer(Role.ADMIN)}


# The schema the app declares (built without starting it); calls go to the running server.
schema = schemathesis.openapi.from_dict(create_app(Settings(), signer=LocalSigner()).openapi())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    suppress_health_check=list(HealthCheck),
)


def call(case: Any, headers: dict[str, str], base_url: str) -> None:
    if case.path == "/ws":  # a WebSocket has no HTTP responses to check
        return
    # `/ready` answers 503 while a dependency is degraded (here: no listener): that is its job.
    checks = CHECKS[1:] if case.path == "/ready" else CHECKS
    case.call_and_validate(base_url=base_url, headers=headers, checks=checks)


@schema.parametrize()
@FUZZ
def test_as_a_participant_no_5xx_and_every_response_is_declared(
    case: Any, tokens: dict[str, dict[str, str]], fuzz_server: str
) -> None:
    call(case, tokens["participant"], fuzz_server)


@schema.parametrize()
@FUZZ
def test_as_an_admin_no_5xx_and_every_response_is_declared(
    case: Any, tokens: dict[str, dict[str, str]], fuzz_server: str
) -> None:
    call(case, tokens["admin"], fuzz_server)


def test_the_fuzzed_app_answers_a_known_route(fuzz_server: str) -> None:
    assert httpx.get(f"{fuzz_server}/health").status_code == 200
