"""Upstream credentials (Plex tokens, API keys) encrypted at rest, and keys derived for other uses.

The `[server] secret_key` is never used as a key itself: HKDF-SHA256 derives one key per purpose
from it, so the secret box, JWT signing and webhook secrets each get an independent key, and
learning one of them says nothing about the others or about the secret_key.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# derive_key() infos live under their own prefix, so no purpose a subsystem asks for can
# reproduce the secret box's own key
_DERIVED_KEY_PREFIX = b"medianest derived key: "
_MAX_HKDF_LENGTH = 255 * 32


class SecretBoxError(Exception):
    """A stored secret cannot be decrypted: it was altered, or the secret_key changed."""


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


class SecretBox:
    """Encrypts and decrypts short secrets with a key derived from the server's secret_key.

    Tokens are Fernet (AES-128-CBC + HMAC-SHA256, random IV): URL-safe text, different on every
    call, and any change to them is detected. Boxes with different `purpose`s cannot read each
    other's tokens.
    """

    def __init__(self, secret_key: str, *, purpose: str = "medianest secret box v1") -> None:
        if not secret_key:
            raise ValueError("secret_key must not be empty")
        self._secret = secret_key.encode("utf-8")
        key = _hkdf(self._secret, purpose.encode("utf-8"), 32)
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def __repr__(self) -> str:
        return "SecretBox(***)"

    def encrypt(self, plaintext: str) -> str:
        """Encrypt `plaintext`; the result is URL-safe ASCII and differs on every call."""
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Decrypt a token made by `encrypt` with the same secret_key and purpose.

        Raises `SecretBoxError` (which never contains the token) when the token was altered or
        was made with another secret_key.
        """
        try:
            plaintext = self._fernet.decrypt(token.encode("utf-8"))
            return plaintext.decode("utf-8")
        except (InvalidToken, ValueError):
            # `from None`: the cause would only add noise, and must not carry the value
            raise SecretBoxError(
                "the stored secret cannot be decrypted: it was altered, or the secret_key has "
                "changed since it was stored (enter the credential again)"
            ) from None

    def derive_key(self, purpose: str, length: int = 32) -> bytes:
        """A `length`-byte key for `purpose` (e.g. "jwt signing"), stable for one secret_key.

        Different purposes get independent keys; none of them equals the secret box's key.
        """
        if not purpose:
            raise ValueError("purpose must not be empty")
        if not 1 <= length <= _MAX_HKDF_LENGTH:
            raise ValueError(f"length must be between 1 and {_MAX_HKDF_LENGTH}")
        return _hkdf(self._secret, _DERIVED_KEY_PREFIX + purpose.encode("utf-8"), length)
