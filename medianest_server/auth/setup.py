"""First run: a one-time setup code guards the creation of the first admin.

While no admin exists the server logs the code at start (people a login provider let in as
users, a Plex friend who came first, do not end setup; the server owner signing in with Plex
does, as that makes them admin); `medianest user setup-code` prints it
again. It is kept encrypted in the settings table and deleted, in the same transaction that
creates the first admin, so two people racing through setup cannot both win.
"""

from __future__ import annotations

import hmac
import json
import secrets

from ..clock import SYSTEM_CLOCK, Clock
from ..db import Database
from ..errors import Forbidden, InvalidInput
from ..secretbox import SecretBox, SecretBoxError
from .models import User
from .users import UserService

SETTING = "core.setup_code"
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def new_code() -> str:
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    return "-".join(chars[i : i + 4] for i in range(0, 16, 4))


class SetupService:
    def __init__(
        self, db: Database, box: SecretBox, users: UserService, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.db = db
        self.box = box
        self.users = users
        self.clock = clock

    async def pending(self) -> bool:
        """True while there is no admin."""
        admins = await self.db.fetch_val("SELECT count(*) FROM users WHERE role = 'admin'")
        return int(admins or 0) == 0

    async def code(self) -> str | None:
        """The setup code while setup is pending (made on first ask), else None.

        Two first asks at once (the start-up log line and a browser) get the same code: the
        insert keeps whichever was stored first.
        """
        if not await self.pending():
            return None
        stored = await self._stored()
        if stored is None:
            await self.db.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES (:key, :value, :now)"
                " ON CONFLICT (key) DO NOTHING",
                {
                    "key": SETTING,
                    "value": json.dumps(self.box.encrypt(new_code())),
                    "now": self.clock.now(),
                },
            )
            stored = await self._stored()
        return stored

    async def _stored(self) -> str | None:
        """The stored code; one the secret box cannot read (the secret_key changed) is dropped."""
        value = await self.db.fetch_val(
            "SELECT value FROM settings WHERE key = :key", {"key": SETTING}
        )
        if not isinstance(value, str):
            return None
        try:
            return self.box.decrypt(value)
        except SecretBoxError:
            await self.db.execute(
                "DELETE FROM settings WHERE key = :key AND value = :value",
                {"key": SETTING, "value": json.dumps(value)},
            )
            return None

    async def complete(self, code: str, username: str, password: str) -> User:
        """Create the first admin if `code` is right; the code is gone afterwards."""
        expected = await self.code()
        if expected is None:
            raise Forbidden("setup is already complete")
        normalized = code.strip().upper().replace(" ", "")
        if not hmac.compare_digest(normalized.encode(), expected.encode()):
            raise InvalidInput("the setup code is wrong", details={"code": ["Wrong setup code."]})
        async with self.db.transaction() as conn:
            claimed = await conn.execute("DELETE FROM settings WHERE key = :key", {"key": SETTING})
            if claimed == 0:
                raise Forbidden("setup is already complete")
            return await self.users.create(username, password=password, role="admin", conn=conn)
