"""Plugin settings edited from the admin pages, saved to `medianest.toml`.

The form is generated from the plugin's marshmallow schema. Secrets are never sent back to the
browser: their field is empty with a "set" marker, and leaving it empty keeps the stored value.
A save validates first (nothing is written when anything is wrong), then rewrites the file
atomically with the previous one kept as `.bak`; the caller then applies the new section to the
running plugin (`plugins.runtime.apply_settings`), which restarts it on the new values.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from .config import Config, read_toml, write_config_file
from .errors import Conflict, InvalidInput, NotFound
from .plugins.loader import PluginManager, PluginRecord

SAVE_HEADER = (
    "# MediaNest configuration. Saved from the admin pages; the previous version is kept as\n"
    "# medianest.toml.bak. Every setting is explained in medianest.toml.example.\n\n"
)


@dataclass(frozen=True)
class SettingField:
    name: str
    label: str  # what the form calls it: metadata "label", else the key in words
    kind: str  # text, password, number, checkbox, select, list, url
    doc: str
    required: bool
    value: str  # what the form shows; always "" for secrets
    secret: bool
    is_set: bool  # for secrets: whether a value is stored
    choices: tuple[str, ...] = ()
    from_env: str | None = None  # the variable that overrides it, if any
    setup: bool = False  # needed before the plugin can work (asked for on the dashboard)


def label_of(name: str, schema_field: fields.Field[Any]) -> str:
    """A field's human label: its `label` metadata, else `plex_tv_url` as "Plex tv url"."""
    given = schema_field.metadata.get("label")
    if isinstance(given, str) and given:
        return given
    return name.replace("_", " ").capitalize()


def _kind(schema_field: fields.Field[Any]) -> tuple[str, tuple[str, ...]]:
    for validator in getattr(schema_field, "validators", []):
        if isinstance(validator, validate.OneOf):
            return "select", tuple(str(c) for c in validator.choices)
    if schema_field.metadata.get("secret"):
        return "password", ()
    if isinstance(schema_field, fields.Boolean):
        return "checkbox", ()
    if isinstance(schema_field, (fields.Integer, fields.Float, fields.Decimal)):
        return "number", ()
    if isinstance(schema_field, fields.List):
        return "list", ()
    if isinstance(schema_field, fields.Url):
        return "url", ()
    return "text", ()


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


class PluginSettings:
    def __init__(
        self, config: Config, manager: PluginManager, environ: Mapping[str, str] | None = None
    ) -> None:
        self.config = config
        self.manager = manager
        self.environ = os.environ if environ is None else environ

    def record(self, name: str) -> PluginRecord:
        record = self.manager.records.get(name)
        if record is None or record.builtin:
            raise NotFound(f"no plugin named {name!r}")
        return record

    def schema(self, record: PluginRecord) -> Schema | None:
        if record.module is None or not callable(
            getattr(record.module, "medianest_config_schema", None)
        ):
            return None
        schema = record.module.medianest_config_schema()
        instance = schema() if isinstance(schema, type) else schema
        return instance if isinstance(instance, Schema) else None

    def fields(self, record: PluginRecord, *, setup_only: bool = False) -> list[SettingField]:
        """The form of a plugin's settings, with current values (secrets never included);
        `setup_only`: just the settings it cannot work without."""
        schema = self.schema(record)
        if schema is None:
            return []
        stored = {**self.config.plugins.settings.get(record.name, {}), **record.config}
        result = []
        for name, schema_field in schema.fields.items():
            setup = bool(schema_field.metadata.get("setup"))
            if setup_only and not setup:
                continue
            kind, choices = _kind(schema_field)
            secret = bool(schema_field.metadata.get("secret"))
            value = stored.get(name, schema_field.load_default)
            if callable(value):
                value = value()
            variable = f"MEDIANEST_PLUGINS__{record.name.upper()}__{name.upper()}"
            result.append(
                SettingField(
                    name=name,
                    label=label_of(name, schema_field),
                    kind=kind,
                    doc=str(schema_field.metadata.get("doc", "")),
                    required=schema_field.required,
                    value="" if secret else _shown(value),
                    secret=secret,
                    is_set=bool(value) if secret else False,
                    choices=choices,
                    from_env=variable if variable in self.environ else None,
                    setup=setup,
                )
            )
        return result

    def save(
        self,
        name: str,
        submitted: Mapping[str, str],
        *,
        only: Collection[str] | None = None,
    ) -> list[str]:
        """Validate and save a plugin's settings; returns the names of the keys that changed.

        `only`: the form showed just these keys (the dashboard's setup card); every other key
        keeps what the file says. Raises InvalidInput (nothing written) with `details` per field.
        """
        document, section, loaded, current = self._prepare(name, submitted, only=only)
        # store what the person typed, converted by the schema (numbers as numbers)
        stored = {k: _toml_value(loaded.get(k, v)) for k, v in section.items()}
        if "enabled" in current:
            stored["enabled"] = current["enabled"]
        changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        document.setdefault("plugins", {})[name] = stored
        write_config_file(self._config_path(), document, header=SAVE_HEADER)
        return changed

    def validate(
        self, name: str, submitted: Mapping[str, str], *, only: Collection[str] | None = None
    ) -> dict[str, Any]:
        """What `save` would store, validated, without writing anything (for "Test
        connection" on values not saved yet). Raises InvalidInput like `save`."""
        return self._prepare(name, submitted, only=only)[2]

    def _prepare(
        self, name: str, submitted: Mapping[str, str], *, only: Collection[str] | None
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        record = self.record(name)
        schema = self.schema(record)
        if schema is None:
            raise InvalidInput(f"the {name} plugin has no settings")
        path = self._config_path()
        document = read_toml(path)
        current = dict(document.get("plugins", {}).get(name, {}))
        section: dict[str, Any] = {}
        for field_name, schema_field in schema.fields.items():
            if only is not None and field_name not in only:
                for key in (field_name, f"{field_name}_file"):
                    if key in current:
                        section[key] = current[key]
                continue
            raw = submitted.get(field_name)
            if schema_field.metadata.get("secret"):
                if raw:  # empty keeps what is stored (the browser never had it)
                    section[field_name] = raw
                elif field_name in current:
                    section[field_name] = current[field_name]
                elif f"{field_name}_file" in current:
                    section[f"{field_name}_file"] = current[f"{field_name}_file"]
                continue
            if isinstance(schema_field, fields.Boolean):
                section[field_name] = raw in ("true", "on", "1")
            elif isinstance(schema_field, fields.List):
                section[field_name] = [p.strip() for p in (raw or "").split(",") if p.strip()]
            elif raw is not None and raw != "":
                section[field_name] = raw
        to_validate = {k: v for k, v in section.items() if not k.endswith("_file")}
        try:
            loaded = schema.load(
                to_validate,
                unknown=RAISE,
                partial=tuple(k.removesuffix("_file") for k in section if k.endswith("_file")),
            )
        except ValidationError as exc:
            messages = exc.messages if isinstance(exc.messages, dict) else {}
            labels = ", ".join(
                label_of(k, schema.fields[k]) if k in schema.fields else k for k in sorted(messages)
            )
            raise InvalidInput(f"Not saved: check {labels}.", details=messages) from exc
        if any(k.endswith("_file") for k in section):
            loaded = {**self._read_files(record, section), **loaded}
        return document, section, loaded, current

    def _read_files(self, record: PluginRecord, section: Mapping[str, Any]) -> dict[str, Any]:
        """Secrets kept in files (`token_file`), as the plugin would read them."""
        try:
            full = self.manager.check_config(record, section)
        except Exception:
            return {}
        return {k.removesuffix("_file"): full.get(k.removesuffix("_file")) for k in section}

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable a plugin in `[plugins] disabled` (takes effect at the next start)."""
        self.record(name)
        path = self._config_path()
        document = read_toml(path)
        plugins = document.setdefault("plugins", {})
        disabled = [n for n in plugins.get("disabled", []) if n != name]
        if not enabled:
            disabled.append(name)
        plugins["disabled"] = sorted(disabled)
        write_config_file(path, document, header=SAVE_HEADER)

    def _config_path(self) -> Path:
        if self.config.path is None:
            raise Conflict("this server was started without a configuration file to save to")
        try:
            read_toml(self.config.path)
        except Exception as exc:
            raise Conflict(f"medianest.toml cannot be read, so it is not changed: {exc}") from exc
        return self.config.path


def _toml_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


__all__ = ["PluginSettings", "SettingField", "label_of"]
