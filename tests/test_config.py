"""Configuration as an operator meets it: init, validation messages, env overrides, secret files."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from medianest_server.cli import main
from medianest_server.config import SECTIONS, ConfigError, load_config, write_config_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "medianest.toml.example"


def _problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    return caught.value.problems


def test_init_writes_every_section_of_the_example_with_a_fresh_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    assert main(["init", "--config", str(first)]) == 0
    assert main(["--config", str(second), "init"]) == 0
    written = tomllib.loads(first.read_text())
    example = tomllib.loads(EXAMPLE.read_text())
    assert written.keys() == example.keys()
    for section in example:
        assert written[section].keys() == example[section].keys(), section
    secret = written["server"]["secret_key"]
    assert len(secret) >= 32
    assert secret != tomllib.loads(second.read_text())["server"]["secret_key"]
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    config = load_config(first, environ={})
    assert config.server.port == 8080
    assert "wrote" in capsys.readouterr().out


def test_example_documents_every_setting_and_validates(tmp_path: Path) -> None:
    example = tomllib.loads(EXAMPLE.read_text())
    for section, schema in SECTIONS.items():
        assert set(example[section]) == set(schema().fields), section
    config = load_config(EXAMPLE, environ={})
    assert config.database.url == "sqlite:///data/medianest.db"
    assert config.data_dir == (ROOT / "data").resolve()


def test_init_refuses_to_overwrite_unless_forced_and_keeps_the_old_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "medianest.toml"
    path.write_text("# mine\n[server]\nsecret_key = 'x'\n")
    assert main(["init", "--config", str(path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert path.read_text() == "# mine\n[server]\nsecret_key = 'x'\n"
    assert main(["init", "--force", "--config", str(path)]) == 0
    assert (tmp_path / "medianest.toml.bak").read_text() == "# mine\n[server]\nsecret_key = 'x'\n"
    assert "secret_key" in path.read_text()


def test_errors_name_the_key_path_and_what_was_expected(write_config) -> None:
    path = write_config(server={"port": "eighty", "base_url": "ftp://x"}, database={"pool_size": 0})
    problems = _problems(path)
    assert "server.port: Not a valid integer." in problems
    assert any(p.startswith("server.base_url: must start with one of http://") for p in problems)
    assert any(
        p.startswith("database.pool_size: Must be greater than or equal to 1") for p in problems
    )


def test_unknown_keys_and_sections_suggest_the_right_name(write_config) -> None:
    path = write_config(server={"prot": 9000})
    path.write_text(path.read_text() + "\n[databse]\nurl = 'x'\n")
    problems = _problems(path)
    assert "server.prot: unknown key; did you mean 'port'?" in problems
    assert "databse: unknown section; did you mean 'database'?" in problems


def test_missing_secret_key_says_how_to_get_one(tmp_path: Path) -> None:
    path = tmp_path / "medianest.toml"
    path.write_text("[server]\nport = 8081\n")
    assert any("server.secret_key: required; `medianest init`" in p for p in _problems(path))


def test_malformed_toml_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "medianest.toml"
    path.write_text('[server]\nport = 8080\nhost = "127.0.0.1\n')
    (problem,) = _problems(path)
    assert problem.startswith("invalid TOML:")
    assert "line 3" in problem and "column" in problem


def test_environment_overrides_sections_plugins_and_lists(write_config) -> None:
    path = write_config()
    config = load_config(
        path,
        environ={
            "MEDIANEST_SERVER__PORT": "9090",
            "MEDIANEST_SERVER__TRUSTED_PROXIES": '["10.0.0.0/8", "127.0.0.1"]',
            "MEDIANEST_DATABASE__URL": "postgresql://u:p@127.0.0.1/db",
            "MEDIANEST_PLUGINS__PLEX__URL": "http://127.0.0.1:32400",
            "MEDIANEST_PLUGINS__ENABLED": '["plex"]',
            "MEDIANEST_CONFIG": "ignored-here",
        },
    )
    assert config.server.port == 9090
    assert config.server.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert config.database.url == "postgresql://u:p@127.0.0.1/db"
    assert config.plugins.settings["plex"] == {"url": "http://127.0.0.1:32400"}
    assert config.plugins.enabled == ("plex",)


def test_environment_typos_are_errors_with_suggestions(write_config) -> None:
    problems = _problems(
        write_config(), {"MEDIANEST_SERVER__PROT": "1", "MEDIANEST_SERVR__PORT": "1"}
    )
    assert "MEDIANEST_SERVER__PROT: unknown key 'server.prot'; did you mean 'port'?" in problems
    assert any(p.startswith("MEDIANEST_SERVR__PORT: unknown section 'servr'") for p in problems)
    bad_value = _problems(write_config(), {"MEDIANEST_SERVER__PORT": "http"})
    assert bad_value == ["server.port: Not a valid integer."]


def test_secret_file_indirection_from_toml_and_environment(write_config, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s" * 40 + "\n")
    path = write_config()
    text = path.read_text().replace(
        next(line for line in path.read_text().splitlines() if line.startswith("secret_key")),
        'secret_key_file = "secret"',
    )
    path.write_text(text)
    assert load_config(path, environ={}).server.secret_key == "s" * 40

    other = tmp_path / "other"
    other.write_text("o" * 40)
    config = load_config(path, environ={"MEDIANEST_SERVER__SECRET_KEY_FILE": str(other)})
    assert config.server.secret_key == "o" * 40

    missing = _problems(path, {"MEDIANEST_SERVER__SECRET_KEY_FILE": str(tmp_path / "nope")})
    assert missing == [
        f"server.secret_key_file: cannot read {tmp_path / 'nope'}: No such file or directory"
    ]
    both = _problems(path, {"MEDIANEST_SERVER__SECRET_KEY": "k" * 40})
    assert both == ["server.secret_key_file: give either secret_key or secret_key_file, not both"]


def test_non_secret_keys_have_no_file_indirection(write_config) -> None:
    problems = _problems(write_config(server={"port_file": "x"}))
    assert problems[0].startswith("server.port_file: unknown key")


def test_config_path_comes_from_flag_then_environment_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEDIANEST_CONFIG", raising=False)
    assert main(["init"]) == 0
    assert (tmp_path / "medianest.toml").exists()
    monkeypatch.setenv("MEDIANEST_CONFIG", str(tmp_path / "env.toml"))
    assert main(["init"]) == 0
    assert (tmp_path / "env.toml").exists()
    assert main(["init", "--config", str(tmp_path / "flag.toml")]) == 0
    assert (tmp_path / "flag.toml").exists()


def test_invalid_config_exits_2_before_touching_data(
    write_config, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(server={"port": 0})
    before = path.read_text()
    for command in (["serve"], ["migrate"], ["backup", "x.db"]):
        with pytest.raises(SystemExit) as exited:
            main([*command, "--config", str(path)])
        assert exited.value.code == 2
        assert "server.port: Must be greater than or equal to 1" in capsys.readouterr().err
    assert main(["check", "--config", str(path)]) == 2
    assert path.read_text() == before
    assert not (path.parent / "data").exists()


def test_unknown_database_scheme_is_named(write_config, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(database={"url": "mysql://root:hunter22@127.0.0.1/x"})
    assert main(["migrate", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'mysql'" in err
    assert "hunter22" not in err
    assert not (path.parent / "data").exists()


def test_configuration_doc_covers_every_setting_and_the_environment() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text()
    for needle in (
        "MEDIANEST_CONFIG",
        "MEDIANEST_<SECTION>__<KEY>",
        "_file",
        "MEDIANEST_PLUGINS__",
    ):
        assert needle in docs, needle
    for section, schema in SECTIONS.items():
        for key in schema().fields:
            assert f"`{key}`" in docs, f"{section}.{key} is not documented"


def test_a_config_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "medianest.toml"
    path.write_bytes(
        '[server]\nsecret_key = "caf\u00e9 latin-1 0123456789abcdefghij"\n'.encode("latin-1")
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "not UTF-8 text: byte 0xe9 at offset" in str(caught.value)
    assert "save the file as UTF-8" in str(caught.value)


def test_the_backup_is_private_from_its_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "medianest.toml"
    path.write_text('[server]\nsecret_key = "old"\n')
    backup = tmp_path / "medianest.toml.bak"
    backup.write_text("an older backup")
    backup.chmod(0o644)
    old_umask = os.umask(0)
    try:
        write_config_file(path, {"server": {"secret_key": "new"}})
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert backup.read_text() == '[server]\nsecret_key = "old"\n'
