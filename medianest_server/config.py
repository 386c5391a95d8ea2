"""Configuration: `medianest.toml`, validated with marshmallow, overridden from the environment.

The order of precedence is: built-in defaults < the TOML file < `MEDIANEST_<SECTION>__<KEY>`
environment variables < `<key>_file` indirection (a secret read from a file). Every error names
the key path (`server.port`) and what was expected; the caller exits with status 2 before any
data is touched. The file is only ever rewritten atomically, with the previous one kept.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import secrets
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w
from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

DEFAULT_CONFIG_NAME = "medianest.toml"
ENV_CONFIG = "MEDIANEST_CONFIG"
ENV_PREFIX = "MEDIANEST_"


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists one `key.path: message` per fault."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def __str__(self) -> str:
        lines = [f"invalid configuration in {self.source}:"]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


def _url_with_scheme(*schemes: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        if value and urlsplit(value).scheme not in schemes:
            raise ValidationError(f"must start with one of {', '.join(s + '://' for s in schemes)}")

    return check


def _ip_network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValidationError(f"not an IP address or network: {value!r}") from exc


class _Section(Schema):
    class Meta:
        unknown = RAISE


class ServerSchema(_Section):
    host = fields.String(load_default="127.0.0.1", metadata={"doc": "address to listen on"})
    port = fields.Integer(
        load_default=8080, validate=validate.Range(1, 65535), metadata={"doc": "TCP port"}
    )
    base_url = fields.String(
        load_default="",
        validate=_url_with_scheme("http", "https"),
        metadata={
            "doc": "the address people use (links, webhook addresses); https here makes "
            "cookies Secure; empty: http://<host>:<port>, following --host and --port"
        },
    )
    data_dir = fields.String(
        load_default="data", metadata={"doc": "relative to the config file's folder"}
    )
    secret_key = fields.String(
        required=True,
        validate=validate.Length(min=32, error="must be at least 32 characters"),
        metadata={"secret": True, "doc": "signs sessions and encrypts stored secrets"},
    )
    trusted_proxies = fields.List(
        fields.String(validate=_ip_network),
        load_default=list,
        metadata={"doc": "proxies whose X-Forwarded-For/Proto are believed"},
    )
    shutdown_timeout_seconds = fields.Float(
        load_default=10.0,
        validate=validate.Range(0, 600),
        metadata={"doc": "how long in-flight requests may finish after SIGTERM"},
    )
    max_request_body_mb = fields.Float(
        load_default=10.0,
        validate=validate.Range(min=0.001, max=10240),
        metadata={"doc": "larger request bodies are refused with 413"},
    )
    log_level = fields.String(
        load_default="info",
        validate=validate.OneOf(["debug", "info", "warning", "error"]),
        metadata={"doc": "debug, info, warning or error"},
    )
    log_format = fields.String(
        load_default="text",
        validate=validate.OneOf(["text", "json"]),
        metadata={"doc": "text (key=value) or json (one object per line)"},
    )

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> ServerConfig:
        data["trusted_proxies"] = tuple(data["trusted_proxies"])
        data["base_url_explicit"] = bool(data["base_url"])
        if not data["base_url"]:
            data["base_url"] = local_base_url(data["host"], data["port"])
        return ServerConfig(**data)


def local_base_url(host: str, port: int) -> str:
    """`http://<host>:<port>` as a browser on this machine reaches it (a wildcard address is
    reached at 127.0.0.1)."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 (a comparison)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def with_listen_address(config: Config, host: str, port: int) -> Config:
    """The configuration as `serve --host/--port` runs it: a base_url that was not set follows
    the address actually listened on."""
    server = config.server
    if server.base_url_explicit:
        return config
    server = replace(server, host=host, port=port, base_url=local_base_url(host, port))
    return replace(config, server=server)


class DatabaseSchema(_Section):
    url = fields.String(
        load_default="sqlite:///data/medianest.db",
        metadata={
            "secret": True,
            "doc": "sqlite:///relative/path.db, sqlite:////absolute/path.db or "
            "postgresql://user:password@host:5432/name",
        },
    )
    pool_size = fields.Integer(
        load_default=5, validate=validate.Range(1, 100), metadata={"doc": "connections kept open"}
    )
    busy_timeout_ms = fields.Integer(
        load_default=5000,
        validate=validate.Range(0, 600_000),
        metadata={"doc": "SQLite: how long a write waits for a lock"},
    )

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> DatabaseConfig:
        return DatabaseConfig(**data)


class RedisSchema(_Section):
    url = fields.String(
        load_default="",
        validate=_url_with_scheme("redis", "rediss", "unix"),
        metadata={"secret": True, "doc": "empty: cache, events and limits stay in this process"},
    )

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> RedisConfig:
        return RedisConfig(**data)


class AuthSchema(_Section):
    api_requests_per_minute = fields.Integer(
        load_default=300,
        validate=validate.Range(min=0),
        metadata={"doc": "per signed-in user; 0 turns the limit off"},
    )
    session_idle_days = fields.Float(
        load_default=30.0,
        validate=validate.Range(min=0.01),
        metadata={"doc": "a browser session unused this long ends"},
    )
    session_absolute_days = fields.Float(
        load_default=90.0,
        validate=validate.Range(min=0.01),
        metadata={"doc": "a browser session ends this long after sign-in, used or not"},
    )

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> AuthConfig:
        return AuthConfig(**data)


class ImagesSchema(_Section):
    cache_max_mb = fields.Float(
        load_default=200.0,
        validate=validate.Range(min=0.01),
        metadata={"doc": "proxied images kept on disk; the least recently used go first"},
    )
    max_image_mb = fields.Float(
        load_default=5.0,
        validate=validate.Range(min=0.01, max=100),
        metadata={"doc": "a larger image from elsewhere is refused"},
    )

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> ImagesConfig:
        return ImagesConfig(**data)


class PluginsSchema(Schema):
    """`[plugins]`: selection lists; each `[plugins.<name>]` table is validated by its plugin."""

    class Meta:
        unknown = RAISE

    enabled = fields.List(
        fields.String(), load_default=list, metadata={"doc": "if not empty, only these load"}
    )
    disabled = fields.List(fields.String(), load_default=list, metadata={"doc": "these never load"})


@dataclass(frozen=True)
class ServerConfig:
    secret_key: str
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = "http://127.0.0.1:8080"
    data_dir: str = "data"
    trusted_proxies: tuple[str, ...] = ()
    shutdown_timeout_seconds: float = 10.0
    max_request_body_mb: float = 10.0
    log_level: str = "info"
    log_format: str = "text"
    base_url_explicit: bool = False  # set in the file or environment, not derived


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///data/medianest.db"
    pool_size: int = 5
    busy_timeout_ms: int = 5000


@dataclass(frozen=True)
class RedisConfig:
    url: str = ""


@dataclass(frozen=True)
class AuthConfig:
    api_requests_per_minute: int = 300
    session_idle_days: float = 30.0
    session_absolute_days: float = 90.0


@dataclass(frozen=True)
class ImagesConfig:
    cache_max_mb: float = 200.0
    max_image_mb: float = 5.0

    @property
    def cache_max_bytes(self) -> int:
        return int(self.cache_max_mb * 2**20)

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 2**20)


@dataclass(frozen=True)
class PluginsConfig:
    enabled: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """The validated configuration. Paths in it are resolved against `base_dir`."""

    server: ServerConfig
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    base_dir: Path = field(default_factory=Path.cwd)
    path: Path | None = None

    @property
    def data_dir(self) -> Path:
        return (self.base_dir / self.server.data_dir).resolve()

    def secret_values(self) -> list[str]:
        """Every secret string in the configuration, for the log redaction filter."""
        values = [self.server.secret_key]
        for url in (self.database.url, self.redis.url):
            password = urlsplit(url).password if url else None
            if password:
                values.append(password)
        return values


SECTIONS: dict[str, type[Schema]] = {
    "server": ServerSchema,
    "database": DatabaseSchema,
    "redis": RedisSchema,
    "auth": AuthSchema,
    "images": ImagesSchema,
    "plugins": PluginsSchema,
}


def resolve_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`--config PATH`, else `$MEDIANEST_CONFIG`, else `./medianest.toml`."""
    chosen = explicit or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG_NAME
    return Path(chosen).expanduser()


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; malformed TOML raises ConfigError with the line and column."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(str(path), ["file not found; create one with `medianest init`"]) from exc
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"invalid TOML: {exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path),
            [
                f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}; "
                "save the file as UTF-8"
            ],
        ) from exc


def load_config(path: Path | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge with the environment and validate. Raises ConfigError; never writes."""
    path = resolve_config_path(path)
    raw = read_toml(path)
    return build_config(
        raw, source=str(path), base_dir=path.resolve().parent, environ=environ, path=path.resolve()
    )


def build_config(
    raw: Mapping[str, Any],
    *,
    source: str = "configuration",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Config:
    """Validate a configuration mapping (as read from TOML) into a Config."""
    environ = os.environ if environ is None else environ
    data = _deep_copy(raw)
    problems: list[str] = []
    problems += _apply_env_overrides(data, environ)
    problems += _unknown_sections(data)
    base_dir = base_dir or Path.cwd()
    file_problems = _read_secret_files(data, base_dir)
    problems += file_problems
    # a secret whose file could not be read is reported once, not again as "required"
    unread = {p.split(":", 1)[0].removesuffix("_file") + ":" for p in file_problems}

    # [plugins.<name>] tables belong to their plugins, which validate them with their own schema
    plugins_table = data.get("plugins", {})
    plugin_tables: dict[str, Any] = {}
    if isinstance(plugins_table, dict):
        plugin_tables = {k: v for k, v in plugins_table.items() if isinstance(v, dict)}
        data["plugins"] = {k: v for k, v in plugins_table.items() if k not in plugin_tables}

    loaded: dict[str, Any] = {}
    for section, schema_cls in SECTIONS.items():
        section_data = data.get(section, {})
        if not isinstance(section_data, dict):
            problems.append(f"{section}: expected a table [{section}]")
            continue
        try:
            loaded[section] = schema_cls().load(section_data)
        except ValidationError as exc:
            described = _describe(section, exc.messages, schema_cls())
            problems += [p for p in described if not p.startswith(tuple(unread))]
    if problems:
        raise ConfigError(source, problems)

    plugins = loaded["plugins"]
    return Config(
        server=loaded["server"],
        database=loaded["database"],
        redis=loaded["redis"],
        auth=loaded["auth"],
        images=loaded["images"],
        plugins=PluginsConfig(
            enabled=tuple(plugins["enabled"]),
            disabled=tuple(plugins["disabled"]),
            settings=plugin_tables,
        ),
        base_dir=base_dir,
        path=path,
    )


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _suggest(name: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else f"; known keys: {', '.join(choices)}"


def _field_names(schema_cls: type[Schema]) -> list[str]:
    return sorted(schema_cls().fields)


def _unknown_sections(data: Mapping[str, Any]) -> list[str]:
    return [
        f"{name}: unknown section{_suggest(name, list(SECTIONS))}"
        for name in data
        if name not in SECTIONS
    ]


def _describe(section: str, messages: Any, schema: Schema, prefix: str = "") -> list[str]:
    """Flatten marshmallow's nested messages into `section.key: message` lines."""
    problems: list[str] = []
    if isinstance(messages, list):
        return [f"{section}{prefix}: {' '.join(map(str, messages))}"]
    for key, value in messages.items():
        if isinstance(key, int):
            problems += _describe(section, value, schema, f"{prefix}[{key}]")
            continue
        path = f"{section}.{key}{prefix}"
        texts = value if isinstance(value, list) else None
        if texts == ["Unknown field."]:
            problems.append(f"{path}: unknown key{_suggest(key, sorted(schema.fields))}")
        elif texts is not None:
            detail = " ".join(map(str, texts))
            if key == "secret_key" and "Missing data" in detail:
                detail = "required; `medianest init` writes a config with a fresh one"
            problems.append(f"{path}: {detail}")
        else:
            problems += _describe(f"{section}.{key}", value, schema)
    return problems


def _apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """`MEDIANEST_SERVER__PORT=9000` sets server.port; plugin keys: MEDIANEST_PLUGINS__PLEX__URL."""
    problems: list[str] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if any(not p for p in parts):
            problems.append(f"{name}: malformed name; use MEDIANEST_<SECTION>__<KEY>")
            continue
        section = parts[0]
        if section not in SECTIONS:
            problems.append(
                f"{name}: unknown section {section!r}{_suggest(section, list(SECTIONS))}"
            )
            continue
        is_plugin_key = section == "plugins" and len(parts) == 3
        if not is_plugin_key:
            if len(parts) != 2:
                problems.append(f"{name}: expected MEDIANEST_{section.upper()}__<KEY>")
                continue
            known = _field_names(SECTIONS[section])
            key = parts[1]
            base = key.removesuffix("_file")
            if key not in known and not (key.endswith("_file") and _is_secret(section, base)):
                problems.append(f"{name}: unknown key '{section}.{key}'{_suggest(key, known)}")
                continue
        target = data.setdefault(section, {})
        for part in parts[1:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = _env_value(environ[name])
    return problems


def _env_value(text: str) -> Any:
    """Strings stay strings (marshmallow converts numbers/booleans); `[...]` is a TOML array."""
    if text.strip().startswith("["):
        try:
            return tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            return text
    return text


def _is_secret(section: str, key: str) -> bool:
    schema_field = SECTIONS[section]().fields.get(key)
    return bool(schema_field and schema_field.metadata.get("secret"))


def _read_secret_files(data: dict[str, Any], base_dir: Path) -> list[str]:
    """`secret_key_file = "/run/secrets/medianest"` reads the secret from that file."""
    problems: list[str] = []
    for section in SECTIONS:
        values = data.get(section)
        if not isinstance(values, dict):
            continue
        for key in [k for k in values if isinstance(k, str) and k.endswith("_file")]:
            base = key.removesuffix("_file")
            if not _is_secret(section, base):
                continue  # left in place: validation reports it as an unknown key
            file_name = str(values.pop(key))
            if base in values:
                problems.append(f"{section}.{key}: give either {base} or {key}, not both")
                continue
            file_path = base_dir / file_name
            try:
                values[base] = file_path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append(f"{section}.{key}: cannot read {file_path}: {exc.strerror}")
    return problems


def default_document(secret_key: str | None = None) -> dict[str, Any]:
    """Every section with its defaults (what `medianest init` writes), with a fresh secret."""
    document: dict[str, Any] = {}
    for section, schema_cls in SECTIONS.items():
        values: dict[str, Any] = {}
        for name, schema_field in schema_cls().fields.items():
            default = schema_field.load_default
            if callable(default):
                default = default()
            if name == "secret_key":
                default = secret_key or generate_secret_key()
            values[name] = default
        document[section] = values
    return document


def generate_secret_key() -> str:
    return secrets.token_urlsafe(48)


INIT_HEADER = """\
# MediaNest configuration, written by `medianest init`.
# Every setting is explained in medianest.toml.example and docs/configuration.md.
# Environment variables override it: MEDIANEST_<SECTION>__<KEY>, e.g. MEDIANEST_SERVER__PORT=9000.
# Keep this file private: it holds the secret key (or point secret_key_file at a file instead).

"""


def _write_private(path: Path, data: bytes) -> None:
    """Write `path` readable by its owner only from the first byte (it holds secrets): created
    0600, or made 0600 before it is truncated if it existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_config_file(path: Path, document: Mapping[str, Any], *, header: str = "") -> Path | None:
    """Write TOML atomically (temp file, fsync, rename); the previous file is kept as `.bak`.

    Returns the backup path when a previous file existed. The file is created readable by its
    owner only, because it holds secrets.
    """
    text = header + tomli_w.dumps(dict(document))
    path = path.resolve()
    backup: Path | None = None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o600)
        if path.exists():
            backup = path.with_name(path.name + ".bak")
            _write_private(backup, path.read_bytes())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return backup
