"""Structured logging: one line per record, a request id on every line of a request, no secrets.

`configure_logging()` installs a formatter (text `key=value` or JSON) on the root logger. Every
line passes through `Redactor`, which blanks registered secret values (the secret key, database
and Redis passwords, later upstream tokens) and anything that looks like a credential.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, RequestKey, StreamResponse

request_id_var: ContextVar[str | None] = ContextVar("medianest_request_id", default=None)
REQUEST_ID = RequestKey("request_id", str)
# what a request's access line says (request id, the client behind a trusted proxy, a path with
# its secret blanked): one dict, shared by the request aiohttp logs and every clone of it
LOG_FIELDS = RequestKey("log_fields", dict[str, str])
ACCESS_LOGGER = "medianest.access"

REDACTED = "***"
_MIN_SECRET_LENGTH = 6

# credential *values* as they appear in structured text: `key=value` (query strings, our
# key=value log fields), `"key": "value"` (JSON), URL user info, bearer and basic credentials.
# Prose is left alone: "api_key: Missing data for required field." names a key, it holds no
# value, and used to come out as "api_key: *** data ...".
_KEYS = r"(?:password|passwd|secret|token|api[_-]?key|x-plex-token|authorization)"
_PATTERNS = [
    re.compile(rf"(?i)(\b{_KEYS}\s*=\s*)(?!\*\*\*)([^\s\"'&,;]+)"),
    re.compile(rf"(?i)([\"']{_KEYS}[\"']\s*:\s*[\"'])(?!\*\*\*)([^\"']+)"),
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)([^@\s/]+)(@)"),
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)([A-Za-z0-9._~+/=-]{8,})"),
]

_CREDENTIAL_WORDS = ("pass", "secret", "token", "key", "auth", "bearer", "://")

# attributes every LogRecord has; anything else on a record came from `extra=`
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class Redactor:
    """Blanks secret values and credential-shaped text; thread-safe, values added at run time."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, *values: str | None) -> None:
        """Register secret values (short ones are ignored: they would blank ordinary words)."""
        with self._lock:
            for value in values:
                if value and len(value) >= _MIN_SECRET_LENGTH:
                    self._secrets.add(value)
            longest_first = sorted(self._secrets, key=len, reverse=True)
            self._pattern = (
                re.compile("|".join(re.escape(s) for s in longest_first)) if longest_first else None
            )

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        lowered = text.lower()
        # the credential patterns only matter where a credential-ish word appears: most lines
        # (every access line) have none, and skip three regular expressions
        if any(word in lowered for word in _CREDENTIAL_WORDS):
            for credential in _PATTERNS:
                text = credential.sub(_blank_group_two, text)
        return text


def _blank_group_two(match: re.Match[str]) -> str:
    groups = match.groups()
    return groups[0] + REDACTED + "".join(g or "" for g in groups[2:])


redactor = Redactor()


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        _quieten_bad_requests(record)
        return True


def _quieten_bad_requests(record: logging.LogRecord) -> None:
    """aiohttp logs a request its parser refuses (a 20 KB header, garbage) as an ERROR with a
    traceback: that is the client's mistake, worth one WARNING line, not a stack."""
    if record.name != "aiohttp.server" or not record.exc_info:
        return
    error = record.exc_info[1]
    if isinstance(error, HttpProcessingError):
        reason = str(error.message).splitlines()[0][:200] if error.message else ""
        record.msg, record.args = "malformed request refused: %s %s", (error.code, reason)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`2026-11-21T05:52:36.123Z INFO medianest.web request finished request_id=… status=200`."""

    def format(self, record: logging.LogRecord) -> str:
        message = escape_controls(record.getMessage())
        parts = [_timestamp(record), record.levelname, record.name, message]
        fields = _extras(record)
        if record.request_id:  # type: ignore[attr-defined]
            fields = {"request_id": record.request_id, **fields}  # type: ignore[attr-defined]
        parts += [f"{k}={_text_value(v)}" for k, v in fields.items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redactor(line)


_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """Control characters as `\\x1b`: a path or a name from outside cannot move the cursor,
    recolour a terminal or start a line that looks like another record."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _text_value(value: Any) -> str:
    text = escape_controls(str(value))
    return json.dumps(text) if (not text or any(c in text for c in ' "=')) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.request_id:  # type: ignore[attr-defined]
            entry["request_id"] = record.request_id  # type: ignore[attr-defined]
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redactor(json.dumps(entry, default=str))


def configure_logging(
    level: str = "info", fmt: str = "text", *, stream: TextIO | None = None
) -> logging.Handler:
    """Install one handler on the root logger (replacing any earlier one of ours)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_medianest", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._medianest = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's own access logger is replaced by AccessLogger below
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # the drivers log every statement with its parameters (password hashes, token digests)
    for driver in ("aiosqlite", "aiopg", "psycopg2"):
        logging.getLogger(driver).setLevel(logging.INFO)
    return handler


class AccessLogger(AbstractAccessLogger):
    """One structured line per request, carrying its request id. The query string is left out."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        # a request the HTTP parser refused (a 20 KB header) never passed a middleware: its
        # line has no request id, and nothing here may assume routing happened
        fields = request.get(LOG_FIELDS) or {}
        self.logger.info(
            "request",
            extra={
                "request_id": fields.get("request_id"),
                "method": request.method,
                "path": fields.get("path", request.path),
                "status": response.status,
                "duration_ms": round(time * 1000, 2),
                "remote": fields.get("remote", request.remote),
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def access_log_options() -> dict[str, Any]:
    """Keyword arguments for an aiohttp runner or test server: structured access lines."""
    return {"access_log_class": AccessLogger, "access_log": logging.getLogger(ACCESS_LOGGER)}
