"""Benchmark: `medianest serve` to /health/ready answering 200, and an idle server's memory.

Targets (issue 2): ready in under 1.5 s on SQLite; resident memory of an idle server without
plugins under 80 MB. Baseline, measured in the same run: a bare aiohttp app that answers one
route, started the same way, so the figures read as "MediaNest costs N x a bare aiohttp app".

    .venv/bin/python bench/startup_and_memory.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

BARE_AIOHTTP = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    async def ready(request):
        return web.json_response({"status": "ready"})
    app = web.Application()
    app.router.add_get("/health/ready", ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_and_wait(
    argv: list[str], port: int, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], float]:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = start + 30
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, time.perf_counter() - start
        except (OSError, urllib.error.URLError):
            time.sleep(0.005)
    proc.kill()
    raise RuntimeError(f"{argv} not ready in 30 s")


def measure(
    argv_for_port, env: dict[str, str], runs: int, idle_seconds: float
) -> tuple[list[float], float]:
    times, memory = [], 0.0
    for _ in range(runs):
        port = free_port()
        proc, elapsed = start_and_wait(argv_for_port(port), port, env)
        times.append(elapsed)
        time.sleep(idle_seconds)  # let start-up garbage settle before reading RSS
        memory = max(memory, rss_mb(proc.pid))
        proc.terminate()
        proc.wait(15)
    return times, memory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=1.0)
    args = parser.parse_args()
    # the core only: no installed plugin (examples/hello, plugins/*) is loaded
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIANEST_")}
    env["MEDIANEST_PLUGINS"] = "none"

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "medianest.toml"
        subprocess.run(
            [sys.executable, "-m", "medianest_server", "init", "--config", str(config)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # first start creates and migrates the database; later starts find it migrated
        first, _ = measure(
            lambda port: [
                sys.executable,
                "-m",
                "medianest_server",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
            ],
            env,
            1,
            0.0,
        )
        warm, medianest_rss = measure(
            lambda port: [
                sys.executable,
                "-m",
                "medianest_server",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
            ],
            env,
            args.runs,
            args.idle_seconds,
        )
        bare_script = Path(tmp) / "bare.py"
        bare_script.write_text(BARE_AIOHTTP)
        bare, bare_rss = measure(
            lambda port: [sys.executable, str(bare_script), str(port)],
            env,
            args.runs,
            args.idle_seconds,
        )

    median = statistics.median
    print(f"runs: {args.runs} (median of warm starts; first start migrates a new database)")
    print(f"medianest serve -> /health/ready, first start : {first[0] * 1000:7.0f} ms")
    print(
        f"medianest serve -> /health/ready, warm start  : {median(warm) * 1000:7.0f} ms"
        f"   (target < 1500 ms)"
    )
    print(f"bare aiohttp app -> ready (baseline)          : {median(bare) * 1000:7.0f} ms")
    print(f"start-up ratio medianest / bare aiohttp       : {median(warm) / median(bare):7.2f} x")
    print(
        f"idle RSS medianest (no plugins)               : {medianest_rss:7.1f} MB"
        f"   (target < 80 MB)"
    )
    print(f"idle RSS bare aiohttp (baseline)              : {bare_rss:7.1f} MB")
    print(f"memory ratio medianest / bare aiohttp         : {medianest_rss / bare_rss:7.2f} x")


if __name__ == "__main__":
    main()
