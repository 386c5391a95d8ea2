"""One normal form for usernames, for storage, lookup and sign-in limits alike.

Usernames are stored as typed (case kept) but must be ASCII letters, digits and `. _ @ -` once
NFKC-normalised; two names are the same account when their normal forms are equal. Matching is
done on this normal form in Python, never by the database's own case folding: PostgreSQL's
`lower()` folds `İ` to `i`, so `tİki` reached `tiki` while the sign-in limit counted
`tİki` apart, five more guesses per letter.
"""

from __future__ import annotations

import unicodedata


def normalize_username(name: str) -> str:
    """NFKC, case-folded, outer white space removed: the key two spellings share."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold()).strip()


def typed_username(name: str) -> str:
    """What is stored for a new username: NFKC (full-width letters become ASCII), case kept."""
    return unicodedata.normalize("NFKC", name).strip()
