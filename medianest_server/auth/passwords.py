"""Password hashing with Argon2id (argon2-cffi): memory-hard, tuned to ~150 ms on a small box.

Hashing and verifying run in a worker thread: 150 ms of CPU must never block the event loop.
"""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# 64 MiB, two passes, two lanes: brute force stays expensive, sign-in stays quick (bench/)
_HASHER = PasswordHasher(time_cost=2, memory_cost=65536, parallelism=2)
MIN_LENGTH = 8
MAX_LENGTH = 1024


@functools.cache
def _dummy_hash() -> str:
    """A real hash of a random password: verifying against it costs what a real check costs,
    so an unknown username takes as long to refuse as a wrong password. Made on first use:
    hashing at import would add its cost to every start."""
    return _HASHER.hash("medianest-no-such-user-0f3c9a")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches; a missing hash is checked against a dummy (same cost)."""

    def verify() -> bool:
        try:
            matched = _HASHER.verify(stored_hash or _dummy_hash(), password)
            return matched and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)
