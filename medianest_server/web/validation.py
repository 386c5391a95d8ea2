"""Parse request input with marshmallow; anything wrong is a 400 that names the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from marshmallow import RAISE, Schema, ValidationError

from ..errors import InvalidInput

_CONTROL = {chr(c) for c in range(32) if chr(c) not in "\t\n\r"} | {chr(127)}


def _control_characters(value: Any, path: str = "") -> list[str]:
    """Field paths whose text holds a control character (NUL cannot even be stored)."""
    if isinstance(value, str):
        return [path or "_body"] if any(c in _CONTROL for c in value) else []
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
        details = {name: ["Contains a control character."] for name in bad}
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
