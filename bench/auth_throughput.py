"""Benchmark: authenticated `GET /api/v1/me` throughput, and the cost of password hashing.

Targets: one `medianest serve` process on SQLite answers at least 3,000 authenticated
`GET /api/v1/me` requests/s, whichever way the caller signs in: (a) the browser session cookie,
(b) a personal API token as Bearer, (c) a JWT access token as Bearer. Hashing or verifying a
password (Argon2id) takes 50 to 250 ms: slow for brute force, quick enough for a sign-in.
Baselines, measured in the same run: the unauthenticated static `GET /health/live` on the same
server with the same load generator (measured before and after the three configurations), and
`hashlib.sha256` of the same password, so the figures read as "authentication costs N x".

Load comes from `wrk -t1 -c32` when it is installed, else from an aiohttp client in a separate
process with 32 connections. The server runs with `[auth] api_requests_per_minute = 0` so the
API rate limit does not interfere, and without the third-party plugins installed in the venv
(MEDIANEST_PLUGINS=none; --installed-plugins loads them). All traffic goes to 127.0.0.1, every
run is bounded in time, and the server is stopped at the end.

    .venv/bin/python bench/auth_throughput.py [--duration 8] [--connections 32] [--client auto]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchsite import (
    PASSWORD,
    browser_cookie,
    free_port,
    seed_database,
    wait_ready,
    write_config,
)

TARGET_RPS = 3000
HASH_TARGET_MS = (50, 250)
SHA_REPEAT = 1000


def start_server(
    config: Path, port: int, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "medianest_server", "serve", "--config", str(config)]
    argv += ["--port", str(port)]
    with log.open("wb") as handle:
        proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if not wait_ready(proc, port, log):
        proc.kill()
        raise RuntimeError("server not ready in 30 s")
    return proc


async def sign_in(base: str) -> tuple[str, str]:
    """The browser session cookie (via the /login form) and a JWT access token."""
    import aiohttp

    cookie = await browser_cookie(base)
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            f"{base}/api/v1/auth/token", json={"username": "bench", "password": PASSWORD}
        ) as resp,
    ):
        body = await resp.json()
        assert resp.status == 200, body
    return cookie, body["access_token"]


def check_once(url: str, headers: dict[str, str], auth_method: str | None) -> None:
    """One request before the load: it must answer 200, signed in the expected way."""
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as resp:
        body = json.loads(resp.read())
    if auth_method is not None and body.get("auth") != auth_method:
        raise RuntimeError(f"{url} signed in as {body.get('auth')!r}, expected {auth_method!r}")


def run_wrk(url: str, headers: dict[str, str], args: argparse.Namespace) -> tuple[float, int]:
    header_args = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]

    def argv(seconds: float) -> list[str]:
        duration = f"-d{max(1, round(seconds))}s"
        return ["wrk", "-t1", f"-c{args.connections}", duration, *header_args, url]

    if args.warmup > 0:
        subprocess.run(
            argv(args.warmup),
            capture_output=True,
            check=True,
            timeout=args.warmup + 30,
        )
    out = subprocess.run(
        argv(args.duration),
        capture_output=True,
        text=True,
        check=True,
        timeout=args.duration + 30,
    ).stdout
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    errors = re.search(r"Socket errors:.*?(\d+).*?(\d+).*?(\d+).*?(\d+)", out)
    failures = int(bad.group(1)) if bad else 0
    failures += sum(int(n) for n in errors.groups()) if errors else 0
    return float(rps.group(1)), failures


async def python_load(
    url: str, headers: dict[str, str], connections: int, warmup: float, duration: float
) -> dict[str, float]:
    """The fallback load generator; runs in its own process (see --_client)."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    counts = {"ok": 0, "bad": 0}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as client:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + duration

        async def worker() -> None:
            while (now := time.perf_counter()) < stop_at:
                try:
                    async with client.get(url) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                if now >= measure_from:
                    counts["ok" if ok else "bad"] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return {"rps": counts["ok"] / duration, "bad": counts["bad"]}


def run_python_client(
    url: str, headers: dict[str, str], args: argparse.Namespace
) -> tuple[float, int]:
    argv = [sys.executable, __file__, "--_client", url, "--_headers", json.dumps(headers)]
    argv += ["--connections", str(args.connections), "--warmup", str(args.warmup)]
    argv += ["--duration", str(args.duration)]
    out = subprocess.run(
        argv, capture_output=True, text=True, check=True, timeout=args.warmup + args.duration + 60
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return float(result["rps"]), int(result["bad"])


def choose_client(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    if shutil.which("wrk"):
        return "wrk"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["apt-get", "install", "-y", "wrk"], capture_output=True, check=True, timeout=300
        )
    return "wrk" if shutil.which("wrk") else "python"


async def hash_timings(runs: int) -> dict[str, list[float]]:
    from medianest_server.auth.passwords import hash_password, verify_password

    hashes, verifies, sha = [], [], []
    stored = await hash_password(PASSWORD)  # warm the thread pool and argon2
    for _ in range(runs):
        start = time.perf_counter()
        stored = await hash_password(PASSWORD)
        hashes.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert await verify_password(stored, PASSWORD)
        verifies.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(SHA_REPEAT):  # one call is below the timer's resolution
            hashlib.sha256(PASSWORD.encode()).hexdigest()
        sha.append((time.perf_counter() - start) / SHA_REPEAT)
    return {"hash": hashes, "verify": verifies, "sha256": sha}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--hash-runs", type=int, default=20)
    parser.add_argument(
        "--installed-plugins",
        action="store_true",
        help="load the third-party plugins installed in the venv (default: the core alone)",
    )
    parser.add_argument("--_client", help=argparse.SUPPRESS)
    parser.add_argument("--_headers", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._client:  # the fallback load generator, in its own process
        result = asyncio.run(
            python_load(
                args._client,
                json.loads(args._headers),
                args.connections,
                args.warmup,
                args.duration,
            )
        )
        print(json.dumps(result))
        return

    load_before = os.getloadavg()
    client = choose_client(args.client)
    load = run_wrk if client == "wrk" else run_python_client
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIANEST_")}
    if not args.installed_plugins:
        env["MEDIANEST_PLUGINS"] = "none"  # the core alone, not whatever the venv has installed
    results: dict[str, tuple[float, int]] = {}

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config = write_config(tmp)
        api_token = asyncio.run(seed_database(config, token=True))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(config, port, env, tmp / "server.log")
        try:
            cookie, jwt = asyncio.run(sign_in(base))
            runs: list[tuple[str, str, dict[str, str], str | None]] = [
                ("baseline-1", "/health/live", {}, None),
                ("cookie", "/api/v1/me", {"Cookie": cookie}, "cookie"),
                ("api_token", "/api/v1/me", {"Authorization": f"Bearer {api_token}"}, "api_token"),
                ("jwt", "/api/v1/me", {"Authorization": f"Bearer {jwt}"}, "jwt"),
                ("baseline-2", "/health/live", {}, None),
            ]
            for name, path, headers, method in runs:
                check_once(base + path, headers, method)
                results[name] = load(base + path, headers, args)
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)

    timings = asyncio.run(hash_timings(args.hash_runs))
    load_avg = os.getloadavg()

    baseline = statistics.mean([results["baseline-1"][0], results["baseline-2"][0]])
    plugins = "installed third-party plugins" if args.installed_plugins else "core only"
    print(f"server: medianest serve on SQLite, {plugins}, api_requests_per_minute = 0")
    print(
        f"load generator: {client}, {args.connections} connections, {args.duration:g} s after a "
        f"{args.warmup:g} s warm-up; {os.cpu_count()} CPUs, load average (1/5/15 min) before "
        f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after "
        f"{load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}"
    )
    print(f"{'GET':<34} {'req/s':>9} {'x baseline':>11} {'target':>12} {'failed':>7}")
    rows = [
        ("/health/live, no auth (baseline)", baseline, None, None),
        ("/api/v1/me, session cookie", *results["cookie"], TARGET_RPS),
        ("/api/v1/me, API token Bearer", *results["api_token"], TARGET_RPS),
        ("/api/v1/me, JWT Bearer", *results["jwt"], TARGET_RPS),
    ]
    for label, rps, failed, target in rows:
        ratio = rps / baseline if baseline else float("nan")
        target_text = f">= {target:,}" if target else ""
        failed_text = "" if failed is None else str(failed)
        print(f"{label:<34} {rps:9.0f} {ratio:10.2f}x {target_text:>12} {failed_text:>7}")
    print(
        f"  (baseline before {results['baseline-1'][0]:.0f}, after {results['baseline-2'][0]:.0f}"
        f" req/s; failed: {results['baseline-1'][1] + results['baseline-2'][1]})"
    )

    sha_us = statistics.median(timings["sha256"]) * 1e6
    title = f"password, {args.hash_runs} runs"
    print(f"\n{title:<34} {'median':>9} {'p95':>9} {'target':>12}")
    for label, key in (("hash_password (Argon2id)", "hash"), ("verify_password", "verify")):
        med, high = statistics.median(timings[key]) * 1000, p95(timings[key]) * 1000
        print(
            f"{label:<34} {med:7.1f}ms {high:7.1f}ms {HASH_TARGET_MS[0]:>5}-{HASH_TARGET_MS[1]} ms"
            f"   {med * 1000 / sha_us:,.0f}x sha256"
        )
    print(
        f"{'hashlib.sha256 (baseline)':<34} {sha_us:7.2f}us {p95(timings['sha256']) * 1e6:7.2f}us"
    )


if __name__ == "__main__":
    main()
