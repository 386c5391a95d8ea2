"""`pip install .` (not editable) into a clean virtual environment gives a working server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
import venv
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def _uv() -> str:
    """The uv that `./dev` installed (it exports MEDIANEST_UV), else one on PATH."""
    found = os.environ.get("MEDIANEST_UV") or shutil.which("uv")
    if not found:
        message = "uv is not available (./dev test provides it)"
        if os.environ.get("MEDIANEST_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_serves_pages(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    uv = _uv()

    def run(*args: str) -> None:
        # --offline: only loopback in tests; the lock's packages are in uv's cache after a sync
        subprocess.run([uv, *args, "--offline", "--quiet"], check=True, timeout=300, cwd=ROOT)

    dist = tmp_path / "dist"
    run("build", "--wheel", "--package", "medianest", "--out-dir", str(dist))
    (wheel,) = dist.glob("medianest-*.whl")

    # the runtime dependencies exactly as locked (no workspace member), then the wheel itself
    env_dir = tmp_path / "venv"
    venv.create(env_dir)
    python = env_dir / "bin" / "python"
    sync = ["sync", "--locked", "--offline", "--quiet", "--no-dev", "--package", "medianest"]
    subprocess.run(
        [uv, *sync, "--no-install-workspace", "--python", str(python)],
        check=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(env_dir)},
    )
    run("pip", "install", "--python", str(python), "--no-deps", str(wheel))
    # the installed package, not this checkout, serves: templates and static ship in the wheel
    located = subprocess.run(
        [
            str(python),
            "-c",
            "import medianest_server, pathlib; "
            "p = pathlib.Path(medianest_server.__file__).parent; "
            "print(p, (p / 'templates' / 'base.html').is_file(), (p / 'static').is_dir())",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.split()
    assert located[0].startswith(str(env_dir)) and located[1:] == ["True", "True"]

    config = tmp_path / "site" / "medianest.toml"
    subprocess.run(
        [str(env_dir / "bin" / "medianest"), "init", "--config", str(config)], check=True
    )
    server = start_server(config, argv=[str(env_dir / "bin" / "medianest"), "serve"])
    server.wait_ready()
    with urllib.request.urlopen(server.url + "/", timeout=5) as response:
        page = response.read().decode()
    assert "Set up MediaNest" in page  # a fresh install asks for its first admin
    href = page.split('rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    with urllib.request.urlopen(server.url + href, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/css")
    assert (config.parent / "data" / "medianest.db").is_file()
    assert server.stop() == 0


def test_the_test_environment_is_exactly_the_lock() -> None:
    """What runs these tests was installed from uv.lock, and uv.lock matches pyproject.toml:
    a fresh clone next year installs these very versions (`uv sync --locked --check`)."""
    uv = _uv()
    result = subprocess.run(
        [uv, "sync", "--locked", "--check", "--all-packages", "--offline", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": sys.prefix},
        check=False,
    )
    assert result.returncode == 0, result.stderr
