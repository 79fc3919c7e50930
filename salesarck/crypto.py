"""POS token encryption: AES-256-GCM in a versioned text envelope, with a key ring for rotation.

Envelope (one line of ASCII, stored in `pos_connections.access_token_enc` / `refresh_token_enc`):

    sa1:<kid>:<nonce, base64url 12 bytes>:<ciphertext+tag, base64url>

- `sa1` names the format (AES-256-GCM, 96-bit random nonce, 128-bit tag); a new format gets a new prefix.
- `kid` names the key in `SALESARCK_ENCRYPTION_KEYS` (`kid:base64-32-bytes[,kid:...]`, first = current).
- The associated data binds a ciphertext to its row and column (`pos_connections/<id>/<column>`), so a
  token copied to another connection or swapped between access and refresh fails to decrypt.

An empty stored value means "no token" (the seed's convention for Clover refresh tokens). Errors name
the connection and never the token; plaintexts travel as `SecretStr` so `repr()` never shows them.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from salesarck.config import Settings
from salesarck.errors import ConfigError, SalesarckError
from salesarck.errors import ValidationError as SalesarckValidation

ENVELOPE_PREFIX = "sa1"
NONCE_BYTES = 12
KEY_BYTES = 32
MAX_TOKEN_CHARS = 8192
_KID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


class TokenCryptoError(SalesarckError):
    """A stored token cannot be decrypted (unknown key, tampered, foreign format). Never holds the token."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64url(text: str) -> bytes:
    if not _B64URL.match(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_key_spec(kid: str = "k1") -> str:
    """A fresh `kid:base64` key entry for SALESARCK_ENCRYPTION_KEYS (random 32 bytes)."""
    if not _KID.match(kid):
        raise ConfigError("a key id must be 1-32 letters, digits, '.', '_' or '-'")
    return f"{kid}:{base64.b64encode(os.urandom(KEY_BYTES)).decode('ascii')}"


@dataclass(frozen=True)
class KeyRing:
    """The keys tokens may be encrypted under; `current_kid` encrypts, all of them decrypt."""

    current_kid: str
    _keys: dict[str, bytes] = field(repr=False)

    def __repr__(self) -> str:
        return f"KeyRing(current_kid={self.current_kid!r}, kids={sorted(self._keys)!r})"

    @property
    def kids(self) -> list[str]:
        return list(self._keys)

    @classmethod
    def parse(cls, spec: str | SecretStr | None) -> KeyRing:
        """Parse `kid:base64-32-bytes[,kid:...]`; the message never includes key material."""
        raw = spec.get_secret_value() if isinstance(spec, SecretStr) else (spec or "")
        raw = raw.strip()
        if not raw:
            raise ConfigError(
                "SALESARCK_ENCRYPTION_KEYS is not set; generate one with "
                "`python -c \"import salesarck.crypto as c; print(c.generate_key_spec())\"`"
            )
        keys: dict[str, bytes] = {}
        for n, part in enumerate(raw.split(","), start=1):
            part = part.strip()
            kid, sep, b64 = part.partition(":")
            if not sep or not _KID.match(kid):
                raise ConfigError(
                    f"SALESARCK_ENCRYPTION_KEYS entry {n} is malformed; expected kid:base64-32-bytes "
                    "with a kid of 1-32 letters, digits, '.', '_' or '-'"
                )
            try:
                key = base64.b64decode(b64.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(f"SALESARCK_ENCRYPTION_KEYS key {kid!r} is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise ConfigError(
                    f"SALESARCK_ENCRYPTION_KEYS key {kid!r} is {len(key)} bytes; AES-256 needs exactly 32"
                )
            if kid in keys:
                raise ConfigError(f"SALESARCK_ENCRYPTION_KEYS names key {kid!r} twice")
            keys[kid] = key
        return cls(next(iter(keys)), keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls.parse(settings.encryption_keys)

    def encrypt(self, plaintext: SecretStr | str, *, aad: str) -> str:
        """Encrypt under the current key with a fresh random nonce."""
        text = plaintext.get_secret_value() if isinstance(plaintext, SecretStr) else plaintext
        nonce = os.urandom(NONCE_BYTES)
        ct = AESGCM(self._keys[self.current_kid]).encrypt(nonce, text.encode("utf-8"), aad.encode("utf-8"))
        return f"{ENVELOPE_PREFIX}:{self.current_kid}:{_b64url(nonce)}:{_b64url(ct)}"

    def decrypt(self, envelope: str, *, aad: str, what: str) -> SecretStr:
        """Decrypt an envelope; `what` names the token for errors (e.g. "access token of connection X")."""
        kid = envelope_kid(envelope, what=what)
        key = self._keys.get(kid)
        if key is None:
            raise TokenCryptoError(
                f"the {what} is encrypted under key {kid!r}, which is not in SALESARCK_ENCRYPTION_KEYS"
            )
        _, _, nonce_b64, ct_b64 = envelope.split(":")
        try:
            nonce, ct = _unb64url(nonce_b64), _unb64url(ct_b64)
            if len(nonce) != NONCE_BYTES:
                raise ValueError("bad nonce")
            plain = AESGCM(key).decrypt(nonce, ct, aad.encode("utf-8"))
            return SecretStr(plain.decode("utf-8"))
        except (InvalidTag, ValueError, UnicodeDecodeError):
            raise TokenCryptoError(
                f"the {what} failed authentication: it was tampered with, copied from another row, "
                "or encrypted with a different key under the same id"
            ) from None

    def needs_rotation(self, envelope: str) -> bool:
        return bool(envelope) and envelope_kid(envelope, what="token") != self.current_kid


def envelope_kid(envelope: str, *, what: str) -> str:
    """The key id an envelope names; a value in another format is reported, never misread."""
    parts = envelope.split(":")
    if len(parts) != 4 or parts[0] != ENVELOPE_PREFIX:
        prefix = parts[0] if len(parts) > 1 and len(parts[0]) <= 8 and parts[0].isalnum() else None
        hint = f" (format {prefix!r})" if prefix and prefix != ENVELOPE_PREFIX else ""
        raise TokenCryptoError(
            f"the {what} is not in SalesArck's {ENVELOPE_PREFIX} envelope{hint}; it was probably written by "
            "another system: reconnect the merchant to store it again"
        )
    if not _KID.match(parts[1]):
        raise TokenCryptoError(f"the {what} names a malformed key id")
    return parts[1]


def token_aad(connection_id: object, column: str) -> str:
    """Associated data binding a token to its connection row and column."""
    return f"pos_connections/{connection_id}/{column}"


def validate_token_text(value: SecretStr | str, *, what: str) -> SecretStr:
    """A provider token: printable ASCII without spaces, at most MAX_TOKEN_CHARS. The message omits it."""
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    text = text.strip()
    if not text:
        raise SalesarckValidation(f"the {what} is empty")
    if len(text) > MAX_TOKEN_CHARS:
        raise SalesarckValidation(f"the {what} is longer than {MAX_TOKEN_CHARS} characters")
    if not all(33 <= ord(ch) <= 126 for ch in text):
        raise SalesarckValidation(f"the {what} contains spaces, control or non-ASCII characters")
    return SecretStr(text)

