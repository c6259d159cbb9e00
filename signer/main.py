"""`python -m signer` / `autopool-signer`: run the signer service, or manage its keys and log.

autopool-signer                      serve (configuration from AUTOPOOL_SIGNER_*)
autopool-signer keygen OUT.json --password-file FILE
                                     new encrypted keystore; prints its address
autopool-signer verify-audit [PATH]  check an audit log's hash chain, and compare its head with
                                     its anchor in the database (with the signer's environment)
autopool-signer accept-audit-gap [PATH] --reason TEXT
                                     append a bridge record from the log's head to its anchor
                                     (after a host crash lost the log's tail, or a rotation)
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import secrets
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import structlog
from eth_account import Account
from pydantic import ValidationError

from backend.chain.typed_data import Domain, DomainHasher, keccak256
from signer.audit import AuditError, AuditLog, check_anchor, read_records
from signer.keys import KeyBackend, KeyLoadError, LocalKey, load_kms_factory
from signer.ledger import Ledger, PostgresLedger
from signer.policy import Policy
from signer.service import SigningService, StartupError
from signer.settings import SignerSettings
from signer.state import SignerState

_DOMAIN_SEPARATOR_CALL = "0x" + keccak256(b"DOMAIN_SEPARATOR()")[:4].hex()
_SIGNER_CALL = "0x" + keccak256(b"signer()")[:4].hex()

RAW_KEY_BANNER = """
############################################################################
#  WARNING: key_backend=raw — the signing key comes from an environment     #
#  variable in plain text. This is for LOCAL DEVELOPMENT ONLY. Never use    #
#  it with a key that controls real funds; use an encrypted keystore or KMS. #
############################################################################
"""


def configure_logging(level: str) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def load_key(settings: SignerSettings) -> KeyBackend:
    log = structlog.get_logger("signer")
    if settings.key_backend == "keystore":
        assert settings.keystore_path is not None
        return LocalKey.from_keystore(settings.keystore_path, settings.keystore_secret())
    if settings.key_backend == "raw":
        assert settings.raw_key is not None
        sys.stderr.write(RAW_KEY_BANNER)
        log.warning("raw key backend in use: local development only", key_backend="raw")
        return LocalKey.from_hex(settings.raw_key.get_secret_value())
    assert settings.kms_factory is not None
    return load_kms_factory(settings.kms_factory)


def build_service(
    settings: SignerSettings,
    key: KeyBackend | None = None,
    mirror: BinaryIO | None = None,
    *,
    ledger: Ledger | None = None,
    state: SignerState | None = None,
) -> SigningService:
    """Key, domain, policy, audit log, ledger and state, wired; the rolling window is rebuilt
    from the log here, and from the database (with the rate limits and the anchor check) by
    `await service.start()`."""
    key = key or load_key(settings)
    hasher = DomainHasher(Domain(settings.chain_id, settings.contract_address))
    audit = AuditLog(
        settings.audit_log, settings.audit_fsync, settings.audit_fsync_interval_ms, mirror
    )
    records = audit.open()
    policy = Policy(settings)
    policy.replay(records)
    timeout = settings.database_timeout_ms / 1000
    return SigningService(
        key,
        hasher,
        policy,
        audit,
        ledger
        or PostgresLedger(settings.dsn(), pool_size=settings.database_pool_size, timeout=timeout),
        state or SignerState(settings.dsn(), settings.deployment, timeout=max(timeout, 2.0)),
        records=records,
        batch_reuse_grace=settings.batch_reuse_grace_seconds,
    )


def _eth_call(rpc_url: str, method: str, params: list[Any]) -> Any:
    response = httpx.post(
        rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=10
    )
    response.raise_for_status()
    body = response.json()
    if "error" in body:
        raise ValueError(f"{method}: {body['error']}")
    return body["result"]


def check_chain(settings: SignerSettings, service: SigningService) -> None:
    """Refuse to start if the chain or the contract disagrees with the configured domain: every
    signature would be rejected on chain (or, worse, be valid for another deployment)."""
    assert settings.rpc_url is not None
    log = structlog.get_logger("signer")
    chain_id = int(_eth_call(settings.rpc_url, "eth_chainId", []), 16)
    if chain_id != settings.chain_id:
        raise ValueError(f"RPC chain id {chain_id} != configured {settings.chain_id}")
    to = settings.contract_address
    separator = _eth_call(
        settings.rpc_url, "eth_call", [{"to": to, "data": _DOMAIN_SEPARATOR_CALL}, "latest"]
    )
    ours = "0x" + service.hasher.domain_separator.hex()
    if str(separator).lower() != ours:
        raise ValueError(f"contract {to} DOMAIN_SEPARATOR() {separator} != ours {ours}")
    onchain = _eth_call(settings.rpc_url, "eth_call", [{"to": to, "data": _SIGNER_CALL}, "latest"])
    onchain_signer = "0x" + str(onchain)[-40:]
    if onchain_signer.lower() != service.address.lower():
        log.warning(
            "the contract trusts another signer: signatures will be rejected until a proposed "
            "signer rotation is executed (proposeSigner, then executeChange after the delay)",
            contract_signer=onchain_signer,
            address=service.address,
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve() -> int:
    try:
        settings = SignerSettings()  # fields come from the environment
    except ValidationError as exc:
        sys.stderr.write(f"signer configuration error:\n{exc}\n")
        return 2
    configure_logging(settings.log_level)
    log = structlog.get_logger("signer")
    try:
        token = settings.token()
        service = build_service(settings, mirror=sys.stderr.buffer)
        if settings.rpc_url:
            check_chain(settings, service)
    except (KeyLoadError, AuditError, ValueError, OSError, httpx.HTTPError) as exc:
        log.error("signer cannot start", error=str(exc))
        return 2
    if settings.socket_path is None and not _is_loopback(settings.host):
        log.warning(
            "listening beyond loopback: the bearer token is the only protection", host=settings.host
        )
    import uvloop

    return uvloop.run(_serve(settings, service, token))


async def _serve(settings: SignerSettings, service: SigningService, token: str) -> int:
    from signer.app import create_app

    log = structlog.get_logger("signer")
    try:
        await service.start()
    except StartupError as exc:
        log.error("signer cannot start", error=str(exc))
        return 2
    try:
        await serve_app(create_app(service, token, key_backend=settings.key_backend), settings)
    finally:
        await service.aclose()
    return 0


async def serve_app(app: Any, settings: SignerSettings) -> None:
    """Serve the signer's ASGI app on its TCP port or Unix socket until stopped."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        uds=str(settings.socket_path) if settings.socket_path else None,
        log_level="warning",
        access_log=False,
        http="httptools",
        lifespan="on",
        # Nothing sits in front of the signer; skip per-request header work it does not need.
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )
    await uvicorn.Server(config).serve()


def keygen(out: Path, password_file: Path) -> int:
    """Create a new key in an encrypted keystore (scrypt, eth-account's defaults)."""
    if out.exists():
        sys.stderr.write(f"{out} exists; refusing to overwrite a key\n")
        return 2
    password = password_file.read_text().rstrip("\r\n")
    if len(password) < 16:
        sys.stderr.write("use a password of at least 16 characters\n")
        return 2
    acct = Account.create(secrets.token_hex(32))
    keyfile = Account.encrypt(acct.key, password)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600)
    out.write_text(json.dumps(keyfile))
    print(acct.address)
    return 0


def _settings_or_none() -> SignerSettings | None:
    try:
        return SignerSettings()
    except ValidationError:
        return None


async def _anchor_of(settings: SignerSettings) -> tuple[int, str] | None:
    state = SignerState(settings.dsn(), settings.deployment)
    await state.open()
    try:
        anchor = await state.anchor()
    finally:
        await state.close()
    return None if anchor is None else (anchor.seq, anchor.hash)


def verify_audit(path: Path | None) -> int:
    """Check the log's hash chain and, with the signer's configuration in the environment,
    compare its head with its anchor in the database."""
    settings = _settings_or_none()
    if path is None:
        if settings is None:
            sys.stderr.write("give the log's path, or run with the signer's environment\n")
            return 2
        path = settings.audit_log
    try:
        records = list(read_records(path))
    except AuditError as exc:
        sys.stderr.write(f"audit log INVALID: {exc}\n")
        return 1
    head = records[-1] if records else {"seq": 0, "hash": "0" * 64}
    print(f"{path}: {len(records)} records, hash chain intact")
    print(f"head: record {head['seq']} {head['hash']}")
    if settings is None:
        print("anchor not checked: the signer's configuration (AUTOPOOL_SIGNER_*) is not set")
        return 0
    try:
        anchor = asyncio.run(_anchor_of(settings))
    except Exception as exc:
        sys.stderr.write(f"anchor not readable ({type(exc).__name__}: {exc})\n")
        return 1
    if anchor is None:
        print(f"no anchor yet for {settings.deployment}")
        return 0
    print(f"anchor of {settings.deployment}: record {anchor[0]} {anchor[1]}")
    try:
        check_anchor(path, records, *anchor)
    except AuditError as exc:
        sys.stderr.write(f"audit log BEHIND ITS ANCHOR: {exc}\n")
        return 1
    print("the log reaches its anchor")
    return 0


def accept_audit_gap(path: Path | None, reason: str) -> int:
    """Append a bridge record from the log's head to its anchor. For an operator who has
    investigated why the log does not reach its anchor (a host crash lost its unsynced tail; a
    rotation started a new file): the gap stays visible in the log for ever."""
    settings = _settings_or_none()
    if settings is None:
        sys.stderr.write("run with the signer's environment (AUTOPOOL_SIGNER_*)\n")
        return 2
    path = path or settings.audit_log
    try:
        anchor = asyncio.run(_anchor_of(settings))
    except Exception as exc:
        sys.stderr.write(f"anchor not readable ({type(exc).__name__}: {exc})\n")
        return 1
    if anchor is None:
        sys.stderr.write(f"no anchor for {settings.deployment}: nothing to bridge\n")
        return 1
    log = AuditLog(path, fsync="always")
    try:
        records = log.open()
    except AuditError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    try:
        try:
            check_anchor(path, records, *anchor)
        except AuditError:
            pass
        else:
            sys.stderr.write("the log reaches its anchor: nothing to bridge\n")
            return 1
        seq = log.bridge(
            anchor[0],
            anchor[1],
            f'"ts":{time.time():.6f},"reason":{json.dumps(reason)}',
        )
        log.flush()
    except AuditError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    finally:
        log.close()
    print(f"{path}: bridge record {seq} continues from the anchor (record {anchor[0]})")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="autopool-signer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (the default)")
    kg = sub.add_parser("keygen", help="create a new encrypted keystore")
    kg.add_argument("out", type=Path)
    kg.add_argument("--password-file", type=Path, required=True)
    va = sub.add_parser(
        "verify-audit", help="check an audit log's hash chain and compare it with its anchor"
    )
    va.add_argument("path", type=Path, nargs="?")
    gap = sub.add_parser(
        "accept-audit-gap", help="bridge from the log's head to its anchor (after inspection)"
    )
    gap.add_argument("path", type=Path, nargs="?")
    gap.add_argument("--reason", required=True, help="why records are missing (kept in the log)")
    args = parser.parse_args(argv)
    if args.command == "keygen":
        sys.exit(keygen(args.out, args.password_file))
    if args.command == "verify-audit":
        sys.exit(verify_audit(args.path))
    if args.command == "accept-audit-gap":
        sys.exit(accept_audit_gap(args.path, args.reason))
    sys.exit(serve())


if __name__ == "__main__":
    main()
