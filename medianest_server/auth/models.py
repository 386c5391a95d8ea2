"""The signed-in person as the rest of the code sees them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "user"]
ROLES: tuple[Role, ...] = ("admin", "user")


@dataclass(frozen=True)
class User:
    """A MediaNest account. Hooks that take `user` receive this; it never carries secrets."""

    id: int
    username: str
    role: Role
    display_name: str | None = None
    avatar_url: str | None = None
    disabled: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def name(self) -> str:
        """What to call them on a page."""
        return self.display_name or self.username
