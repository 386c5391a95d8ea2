"""SecretBox: upstream credentials encrypted at rest with keys derived from the secret_key."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.fernet import Fernet, InvalidToken

from medianest_server.secretbox import SecretBox, SecretBoxError

from ..conftest import SECRET

PLEX_TOKEN = "plex-token-Zx81_yq"


def test_round_trip_and_url_safe() -> None:
    box = SecretBox(SECRET)
    for plaintext in (PLEX_TOKEN, "", "pässwörd ✓ with spaces"):
        token = box.encrypt(plaintext)
        assert re.fullmatch(r"[A-Za-z0-9_=-]+", token)
        assert plaintext not in token or plaintext == ""
        assert box.decrypt(token) == plaintext
    # another box on the same secret_key (after a restart) reads it too
    assert SecretBox(SECRET).decrypt(box.encrypt(PLEX_TOKEN)) == PLEX_TOKEN


def test_two_encryptions_of_the_same_value_differ() -> None:
    box = SecretBox(SECRET)
    first, second = box.encrypt(PLEX_TOKEN), box.encrypt(PLEX_TOKEN)
    assert first != second
    assert box.decrypt(first) == box.decrypt(second) == PLEX_TOKEN


def _assert_refused(box: SecretBox, token: str) -> None:
    with pytest.raises(SecretBoxError) as caught:
        box.decrypt(token)
    message = str(caught.value)
    assert "cannot be decrypted" in message
    assert "secret_key" in message
    assert token not in message
    assert PLEX_TOKEN not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_tampered_token_is_refused_without_echoing_it() -> None:
    box = SecretBox(SECRET)
    token = box.encrypt(PLEX_TOKEN)
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    _assert_refused(box, tampered)
    _assert_refused(box, token[:-4])
    _assert_refused(box, "not-a-token-at-all")


def test_another_secret_key_or_purpose_cannot_decrypt() -> None:
    token = SecretBox(SECRET).encrypt(PLEX_TOKEN)
    _assert_refused(SecretBox(SECRET + "-rotated"), token)
    _assert_refused(SecretBox(SECRET, purpose="webhook secrets v1"), token)


def test_secret_key_is_not_the_encryption_key_and_never_shown() -> None:
    box = SecretBox(SECRET)
    token = box.encrypt(PLEX_TOKEN)
    naive_key = base64.urlsafe_b64encode(SECRET.encode()[:32])
    with pytest.raises(InvalidToken):
        Fernet(naive_key).decrypt(token.encode())
    assert SECRET not in repr(box)


def test_derive_key_is_stable_per_key_and_independent_per_purpose() -> None:
    box = SecretBox(SECRET)
    jwt_key = box.derive_key("jwt signing")
    assert len(jwt_key) == 32
    assert SecretBox(SECRET).derive_key("jwt signing") == jwt_key
    assert SecretBox(SECRET, purpose="other").derive_key("jwt signing") == jwt_key
    assert box.derive_key("webhook secrets") != jwt_key
    assert SecretBox(SECRET + "-rotated").derive_key("jwt signing") != jwt_key
    assert len(box.derive_key("session ids", length=64)) == 64
    # asking derive_key for the box's own purpose does not hand out the box's key
    stolen = Fernet(base64.urlsafe_b64encode(box.derive_key("medianest secret box v1")))
    with pytest.raises(InvalidToken):
        stolen.decrypt(box.encrypt(PLEX_TOKEN).encode())


def test_empty_secret_key_is_refused() -> None:
    with pytest.raises(ValueError, match="secret_key"):
        SecretBox("")
