"""`python -m signer` / `autopool-signer`: run the signer service, or manage its keys.

autopool-signer                      serve (configuration from AUTOPOOL_SIGNER_*)
autopool-signer keygen OUT.json --password-file FILE
                                     new encrypted keystore; prints its address
autopool-signer verify-audit PATH    check an audit log's hash chain
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import secrets
import sys
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import structlog
from eth_account import Account
from pydantic import ValidationError

from backend.chain.typed_data import Domain, DomainHasher, keccak256
from signer.audit import AuditError, AuditLog, read_records
from signer.keys import KeyBackend, KeyLoadError, LocalKey, load_kms_factory
from signer.policy import Policy
from signer.service import SigningService
from signer.settings import SignerSettings

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
    settings: SignerSettings, key: KeyBackend | None = None, mirror: BinaryIO | None = None
) -> SigningService:
    """Key, domain, policy and audit log, wired; the policy state is rebuilt from the log."""
    key = key or load_key(settings)
    hasher = DomainHasher(Domain(settings.chain_id, settings.contract_address))
    audit = AuditLog(
        settings.audit_log_path, settings.audit_fsync, settings.audit_fsync_interval_ms
    )
    records = audit.open()
    policy = Policy(settings)
    policy.replay(records)
    return SigningService(key, hasher, policy, audit)


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
            "the contract trusts another signer: signatures will be rejected until setSigner",
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
    import uvicorn

    from signer.app import create_app

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
    app = create_app(service, token, key_backend=settings.key_backend)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        uds=str(settings.socket_path) if settings.socket_path else None,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        # Nothing sits in front of the signer; skip per-request header work it does not need.
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )
    return 0


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


def verify_audit(path: Path) -> int:
    try:
        n = sum(1 for _ in read_records(path))
    except AuditError as exc:
        sys.stderr.write(f"audit log INVALID: {exc}\n")
        return 1
    print(f"{path}: {n} records, hash chain intact")
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
    va = sub.add_parser("verify-audit", help="check an audit log's hash chain")
    va.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if args.command == "keygen":
        sys.exit(keygen(args.out, args.password_file))
    if args.command == "verify-audit":
        sys.exit(verify_audit(args.path))
    sys.exit(serve())


if __name__ == "__main__":
    main()
