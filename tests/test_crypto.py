"""Token envelope: AES-256-GCM, random nonces, row binding, key ring parsing and clear errors."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from salesarck.crypto import KeyRing, TokenCryptoError, generate_key_spec, token_aad, validate_token_text
from salesarck.errors import ConfigError
from salesarck.errors import ValidationError as SaValidationError
from tests.test_sync_support import key_spec

AAD = token_aad("8a0e4a38-0000-4000-8000-000000000001", "access_token_enc")
WHAT = "access token of connection C1"


def test_round_trip_with_fresh_nonces() -> None:
    ring = KeyRing.parse(key_spec("k1"))
    a = ring.encrypt(SecretStr("EAAA-token"), aad=AAD)
    b = ring.encrypt("EAAA-token", aad=AAD)
    assert a != b and a.startswith("sa1:k1:") and "EAAA" not in a
    assert ring.decrypt(a, aad=AAD, what=WHAT).get_secret_value() == "EAAA-token"
    prefix, kid, nonce, ct = a.split(":")
    assert len(base64.urlsafe_b64decode(nonce + "==")) == 12
    assert len(base64.urlsafe_b64decode(ct + "==")) == len("EAAA-token") + 16


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_round_trip_property(text: str) -> None:
    ring = KeyRing.parse(key_spec("p"))
    assert ring.decrypt(ring.encrypt(text, aad=AAD), aad=AAD, what=WHAT).get_secret_value() == text


def test_bound_to_row_and_column() -> None:
    ring = KeyRing.parse(key_spec("k1"))
    env = ring.encrypt("tok", aad=AAD)
    for other in (token_aad("another-id", "access_token_enc"), token_aad("8a0e4a38-0000-4000-8000-000000000001",
                                                                         "refresh_token_enc")):
        with pytest.raises(TokenCryptoError, match="failed authentication") as info:
            ring.decrypt(env, aad=other, what=WHAT)
        assert "tok" not in str(info.value).replace("token", "")


def test_tampering_is_detected() -> None:
    ring = KeyRing.parse(key_spec("k1"))
    env = ring.encrypt("secret-value", aad=AAD)
    prefix, kid, nonce, ct = env.split(":")
    flipped = ct[:-2] + ("A" if ct[-2] != "A" else "B") + ct[-1]
    for bad in (f"{prefix}:{kid}:{nonce}:{flipped}", f"{prefix}:{kid}:{nonce[::-1]}:{ct}", f"{prefix}:{kid}:!!:{ct}",
                f"{prefix}:{kid}:{nonce}:"):
        with pytest.raises(TokenCryptoError) as info:
            ring.decrypt(bad, aad=AAD, what=WHAT)
        assert "connection C1" in str(info.value) and "secret-value" not in str(info.value)


def test_unknown_key_and_foreign_formats_are_named() -> None:
    old, new = KeyRing.parse(key_spec("old")), KeyRing.parse(key_spec("new"))
    env = old.encrypt("t", aad=AAD)
    with pytest.raises(TokenCryptoError, match="key 'old'.*not in SALESARCK_ENCRYPTION_KEYS"):
        new.decrypt(env, aad=AAD, what=WHAT)
    for foreign in ("EAAAlPlainSquareToken", "v1:abcd:efgh", "3f2a9c:11aa:ffee", "gAAAAABlfernet=="):
        with pytest.raises(TokenCryptoError, match="written by another system") as info:
            new.decrypt(foreign, aad=AAD, what=WHAT)
        assert foreign not in str(info.value)
    with pytest.raises(TokenCryptoError, match="malformed key id"):
        new.decrypt("sa1:bad kid:AAAA:BBBB", aad=AAD, what=WHAT)


def test_key_ring_rotation_decrypts_old_and_encrypts_new() -> None:
    spec_old = key_spec("k1")
    spec_both = key_spec("k2") + "," + spec_old
    old, both = KeyRing.parse(spec_old), KeyRing.parse(spec_both)
    env = old.encrypt("t", aad=AAD)
    assert both.current_kid == "k2" and both.needs_rotation(env)
    assert both.decrypt(env, aad=AAD, what=WHAT).get_secret_value() == "t"
    assert not both.needs_rotation(both.encrypt("t", aad=AAD))
    assert not both.needs_rotation("")


@pytest.mark.parametrize("spec,message", [
    (None, "not set"),
    ("", "not set"),
    ("   ", "not set"),
    ("k1", "malformed"),
    ("k1:", "32"),
    ("k1:not-base64!!", "not valid base64"),
    (f"k1:{base64.b64encode(os.urandom(16)).decode()}", "16 bytes"),
    (f"k1:{base64.b64encode(os.urandom(33)).decode()}", "33 bytes"),
    (f"bad kid:{base64.b64encode(os.urandom(32)).decode()}", "malformed"),
    (f"{'k' * 40}:{base64.b64encode(os.urandom(32)).decode()}", "malformed"),
])
def test_bad_key_specs_are_refused_without_echoing_keys(spec: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        KeyRing.parse(spec)
    if spec and ":" in spec:
        material = spec.split(":", 1)[1]
        assert not material or material not in str(info.value)


def test_duplicate_kid_refused_and_repr_hides_keys() -> None:
    spec = key_spec("k1")
    with pytest.raises(ConfigError, match="twice"):
        KeyRing.parse(spec + "," + spec)
    ring = KeyRing.parse(SecretStr(spec))
    assert spec.split(":", 1)[1] not in repr(ring) and "k1" in repr(ring)
    assert KeyRing.parse(generate_key_spec("demo")).current_kid == "demo"
    with pytest.raises(ConfigError):
        generate_key_spec("no spaces")


@pytest.mark.parametrize("token,message", [
    ("", "empty"), ("   ", "empty"), ("a b", "spaces"), ("tok\x00en", "control"), ("tökén", "non-ASCII"),
    ("x" * 9000, "longer"),
])
def test_token_text_validation(token: str, message: str) -> None:
    with pytest.raises(SaValidationError, match=message) as info:
        validate_token_text(token, what="access token")
    assert token.strip() == "" or token not in str(info.value)
    assert validate_token_text("  EAAA.tok-en_1  ", what="t").get_secret_value() == "EAAA.tok-en_1"
