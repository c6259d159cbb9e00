"""Secrets: never in a repr, never read from a file others can read, never a raw key outside a
local devnet (tests/signer/test_settings_and_cli.py), never committed (.gitignore)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from pydantic import SecretStr, ValidationError

from backend.core.settings import Settings
from devtools.processes import REPO_ROOT
from signer.keys import KeyLoadError, LocalKey
from signer.settings import DEFAULT_STATE_DIR, SecretFileError, SignerSettings

SECRET_WORDS = ("key", "token", "password", "secret", "database_url")
NOT_SECRETS = ("_file", "_path", "_backend", "_factory", "_seconds")
PLAIN_BY_DESIGN: set[tuple[type, str]] = set()


@pytest.mark.parametrize("settings_class", [SignerSettings, Settings])
def test_every_secret_setting_is_a_secret_str(settings_class: Any) -> None:
    secrets = [
        (name, field)
        for name, field in settings_class.model_fields.items()
        if any(word in name for word in SECRET_WORDS)
        and not name.endswith(NOT_SECRETS)
        and (settings_class, name) not in PLAIN_BY_DESIGN
    ]
    assert secrets
    for name, field in secrets:
        assert SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ())), (
            f"{settings_class.__name__}.{name} holds a secret but is not a SecretStr"
        )


def test_secrets_do_not_show_in_a_repr(settings_factory: Callable[..., SignerSettings]) -> None:
    settings = settings_factory(database_url="postgresql://signer:hunter2hunter2@db/autopool")
    shown = repr(settings)
    assert "hunter2" not in shown
    assert settings_factory().raw_key is not None
    assert "59c6995e" not in shown


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_secret_files_that_others_may_read_or_write_are_refused(
    tmp_path: Path, settings_factory: Callable[..., SignerSettings], mode: int
) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 40)
    password = tmp_path / "password"
    password.write_text("correct horse battery staple")
    keystore = tmp_path / "key.json"
    keystore.write_text(json.dumps(Account.encrypt(Account.create().key, "pw", iterations=2)))
    for path in (token, password, keystore):
        path.chmod(mode)
    with pytest.raises(SecretFileError, match=f"chmod 600 {token}"):
        settings_factory(auth_token=None, auth_token_file=token).token()
    with pytest.raises(SecretFileError, match="keystore password file"):
        settings_factory(
            key_backend="keystore", keystore_path=keystore, keystore_password_file=password
        ).keystore_secret()
    with pytest.raises(KeyLoadError, match="group or others"):
        LocalKey.from_keystore(keystore, "pw")
    for path in (token, password, keystore):
        path.chmod(0o600)
    assert settings_factory(auth_token=None, auth_token_file=token).token() == "t" * 40
    LocalKey.from_keystore(keystore, "pw")


def test_the_audit_log_lives_at_an_absolute_path(
    settings_factory: Callable[..., SignerSettings],
) -> None:
    settings = settings_factory(audit_log_path=None)
    assert settings.audit_log == DEFAULT_STATE_DIR / "audit.jsonl"
    assert settings.audit_log.is_absolute()
    with pytest.raises(ValidationError, match="relative"):
        settings_factory(audit_log_path=Path("signer-audit.jsonl"))
    with pytest.raises(ValidationError, match="relative"):
        settings_factory(state_dir=Path("state"))


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".env.production",
        "deploy/.env.local",
        "signer-audit.jsonl",
        "var/audit.jsonl",
        "audit.jsonl.1",
        "signer.json.keystore",
        "keystore/UTC--2026-11-24T00-00-00Z--5fbdb2315678",
        "secrets/signer.pass",
        "signer.key",
    ],
)
def test_secret_and_audit_files_are_never_committed(path: str) -> None:
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", path], cwd=REPO_ROOT, check=False
    )
    assert result.returncode == 0, f"{path} is not ignored by .gitignore"
