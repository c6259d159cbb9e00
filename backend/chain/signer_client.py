"""Client of the signer service (`signer/`): the backend asks it for EIP-712 signatures.

The backend never holds the signing key. It sends `{primaryType, message}` to the signer over
loopback HTTP or a Unix socket with a bearer token; the signer builds the domain from its own
configuration, applies its policy and either signs or refuses with a problem+json naming the
rule (`SignerRefused.rule`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

PROBLEM_TYPE_PREFIX = "urn:autopool:problem:signer:"


@dataclass(frozen=True)
class Signature:
    signature: str  # 0x-hex, 65 bytes r||s||v, v in {27, 28}
    digest: str  # 0x-hex EIP-712 digest
    signer: str  # checksum address


class SignerError(Exception):
    """Base of every signer failure."""


class SignerRefused(SignerError):
    """The signer answered and refused: `rule` names the policy rule (or `unauthorized`,
    `invalid-message`, ...), `status` is the HTTP status (4xx)."""

    def __init__(self, rule: str, detail: str, status: int) -> None:
        super().__init__(f"signer refused ({status} {rule}): {detail}")
        self.rule = rule
        self.detail = detail
        self.status = status


class SignerUnavailable(SignerError):
    """The signer could not be reached or failed (connection error, timeout, 5xx). Nothing is
    known to have been signed; retrying later is safe because signing is deterministic."""


def _rule_of(body: Any, status: int) -> tuple[str, str]:
    if isinstance(body, dict):
        rule = body.get("rule")
        ptype = body.get("type")
        if not isinstance(rule, str) and isinstance(ptype, str):
            rule = ptype.removeprefix(PROBLEM_TYPE_PREFIX)
        detail = body.get("detail") or body.get("title") or ""
        if isinstance(rule, str):
            return rule, str(detail)
    return f"http-{status}", ""


class SignerClient:
    """Async client. `base_url` is `http://127.0.0.1:PORT` or `unix:///path/to/signer.sock`."""

    def __init__(self, base_url: str, token: str, timeout: float = 5.0) -> None:
        if base_url.startswith("unix://"):
            transport = httpx.AsyncHTTPTransport(uds=base_url.removeprefix("unix://"))
            url = "http://signer"
        else:
            transport = httpx.AsyncHTTPTransport()
            url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=url,
            transport=transport,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
        )

    async def _request(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = await self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise SignerUnavailable(f"signer unreachable: {exc!r}") from exc
        if response.status_code >= 500:
            raise SignerUnavailable(f"signer failed: {response.status_code} {response.text[:200]}")
        try:
            body = response.json()
        except ValueError as exc:
            raise SignerUnavailable(f"signer sent non-JSON ({response.status_code})") from exc
        if response.status_code >= 400:
            rule, detail = _rule_of(body, response.status_code)
            raise SignerRefused(rule, detail, response.status_code)
        return body

    async def sign(self, primary_type: str, message: dict[str, Any]) -> Signature:
        """Sign `message` as `primary_type` (Registration, Retopup or PayoutBatch).

        Raises SignerRefused when the signer's policy forbids it, SignerUnavailable otherwise.
        """
        body = await self._request(
            "POST", "/sign", json={"primaryType": primary_type, "message": message}
        )
        try:
            return Signature(
                signature=str(body["signature"]),
                digest=str(body["digest"]),
                signer=str(body["signer"]),
            )
        except (KeyError, TypeError) as exc:
            raise SignerUnavailable(f"malformed signer answer: {body!r}") from exc

    async def address(self) -> str:
        """The signer's checksum address (what the contract's `signer()` must return)."""
        body = await self._request("GET", "/address")
        return str(body["address"])

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> SignerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
