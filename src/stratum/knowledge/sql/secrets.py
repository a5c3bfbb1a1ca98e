"""Encrypting stored database URLs (they carry passwords) with Fernet (AES-128-CBC + HMAC).

The key is ``STRATUM_SECRET_KEY`` when set. Otherwise a per-install key file
``$STRATUM_HOME/secret.key`` is created on first use with mode 0600: the database alone (a
backup, a dump) then does not reveal the credentials. Several gateways sharing one PostgreSQL
store must share the key, so they need ``STRATUM_SECRET_KEY``; losing the key means registering
the connections again.
"""

from __future__ import annotations

import os
from pathlib import Path

from stratum.errors import InvalidRequest, StratumError
from stratum.settings import Settings


class SecretBox:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._fernet: object | None = None

    def encrypt(self, plain: str) -> str:
        token: bytes = self._cipher().encrypt(plain.encode())  # type: ignore[attr-defined]
        return token.decode()

    def decrypt(self, token: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            plain: bytes = self._cipher().decrypt(token.encode())  # type: ignore[attr-defined]
        except InvalidToken as exc:
            raise StratumError(
                "a stored database URL cannot be decrypted with this install's secret key "
                "(STRATUM_SECRET_KEY or $STRATUM_HOME/secret.key changed); register the database again"
            ) from exc
        return plain.decode()

    def _cipher(self) -> object:
        if self._fernet is None:
            try:
                from cryptography.fernet import Fernet
            except ImportError as exc:  # cryptography ships with most installs; say so if not
                raise InvalidRequest(
                    "storing database credentials needs cryptography: pip install cryptography",
                    code="missing_extra",
                ) from exc
            try:
                self._fernet = Fernet(self._key())
            except ValueError as exc:
                raise InvalidRequest(
                    "STRATUM_SECRET_KEY is not a Fernet key (32 url-safe base64-encoded bytes)"
                ) from exc
        return self._fernet

    def _key(self) -> bytes:
        if self._settings.secret_key is not None:
            return self._settings.secret_key.get_secret_value().encode()
        path = Path(self._settings.home) / "secret.key"
        if not path.exists():
            from cryptography.fernet import Fernet

            path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two processes starting together cannot both write a key.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return path.read_bytes().strip()
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
        return path.read_bytes().strip()
