"""Parse request input; anything wrong is a 400 that names the field, never a 500.

One place for numbers and ids: ASCII digits only (`int()` also takes `²`-less Unicode digits
such as `١٢`, and `str.isdigit()` says yes to `²`, which `int()` then refuses), bounded in
length and value (a 64-bit id column overflows on SQLite past 2**63 - 1). Text may not carry
control characters or lone surrogates (`"\ud800"` in JSON, which no database can store).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from marshmallow import RAISE, Schema, ValidationError, fields

from ..errors import InvalidInput, NotFound

_BAD_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_ASCII_INT = re.compile(r"^-?[0-9]{1,19}$")
MAX_ID = 2**63 - 1  # the largest id a BIGINT (and SQLite's INTEGER) holds


def parse_int(text: str, *, field: str, low: int, high: int) -> int:
    """`text` as a whole number from `low` to `high` (ASCII digits); InvalidInput naming
    `field` otherwise."""
    if not _ASCII_INT.match(text) or not low <= int(text) <= high:
        raise InvalidInput(
            f"invalid {field}",
            details={field: [f"Must be a whole number from {low} to {high}."]},
        )
    return int(text)


class WholeNumber(fields.Field[int]):
    """A marshmallow field for a whole number from `low` to `high`: a JSON number or a string
    of ASCII digits (never a bool, a float, `²`, `١٢` or a 5,000-digit number)."""

    def __init__(self, low: int = 0, high: int = MAX_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.low, self.high = low, high
        self.error_messages["invalid"] = f"Must be a whole number from {low} to {high}."

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.make_error("invalid")
        text = str(value)
        if not _ASCII_INT.match(text) or not self.low <= int(text) <= self.high:
            raise self.make_error("invalid")
        return int(text)


class Id(WholeNumber):
    """An id or a key: a whole number from 1 to 2**63 - 1 (what a BIGINT holds)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(1, MAX_ID, **kwargs)


def path_id(request: web.Request, name: str) -> int:
    """The id in the path segment `{name}`: ASCII digits from 1 to 2**63 - 1. Anything else
    names nothing that can exist: NotFound (404), as for an id nobody has."""
    text = request.match_info.get(name, "")
    if not _ASCII_INT.match(text) or text.startswith("-") or not 1 <= int(text) <= MAX_ID:
        raise NotFound(f"no such {name.removesuffix('_id').replace('_', ' ')}")
    return int(text)


def _control_characters(value: Any, path: str = "") -> list[str]:
    """Field paths whose text holds a control character (NUL cannot even be stored) or a lone
    surrogate (not Unicode text at all)."""
    if isinstance(value, str):
        return [path or "_body"] if _BAD_TEXT.search(value) else []
    if isinstance(value, Mapping):
        found = []
        for key, item in value.items():
            found += _control_characters(str(key), path or "_body")
            found += _control_characters(item, f"{path}.{key}" if path else str(key))
        return found
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in _control_characters(item, path)]
    return []


def _load(schema: Schema, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    bad = _control_characters(data)
    if bad:
        details = {name: ["Contains a control character or invalid Unicode."] for name in bad}
        raise InvalidInput(f"invalid {where}: {', '.join(sorted(details))}", details=details)
    try:
        loaded = schema.load(data, unknown=RAISE)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        fields = ", ".join(sorted(str(k) for k in messages))
        raise InvalidInput(f"invalid {where}: {fields}", details=messages) from exc
    return dict(loaded)


async def load_json(request: web.Request, schema: Schema) -> dict[str, Any]:
    """The JSON object body, validated by `schema` (unknown fields are refused)."""
    try:
        body = await request.json()
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise InvalidInput(
            "the request body is not valid JSON", details={"_body": [str(exc)]}
        ) from exc
    if not isinstance(body, dict):
        raise InvalidInput(
            "the request body must be a JSON object", details={"_body": ["Not an object."]}
        )
    return _load(schema, body, "request body")


async def load_form(
    request: web.Request, schema: Schema, *, ignore: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A form post validated by `schema`; fields in `ignore` (the CSRF token) are dropped."""
    form = await request.post()
    data = {k: v for k, v in form.items() if k not in ignore and isinstance(v, str)}
    return _load(schema, data, "form")


def load_query(request: web.Request, schema: Schema) -> dict[str, Any]:
    return _load(schema, dict(request.query), "query")
