"""Benchmark: what the shared HttpClient (breaker, stats, retries) costs over a bare ClientSession.

A bare aiohttp upstream answers a small JSON body from a subprocess on 127.0.0.1. Measured, for
each client: sequential requests (latency p50/p99) and requests at a fixed concurrency
(throughput). Then single-flight: 100 identical concurrent GETs and how many reached the upstream.

    .venv/bin/python bench/http_client.py [--requests 2000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Awaitable, Callable

import aiohttp

from medianest_server.http import HttpClient

UPSTREAM = textwrap.dedent(
    """
    import asyncio, sys
    from aiohttp import web
    hits = 0
    async def identity(request):
        global hits
        hits += 1
        if request.query.get("slow"):
            await asyncio.sleep(0.05)
        return web.json_response({"MediaContainer": {"size": 0, "machineIdentifier": "abc"}})
    async def count(request):
        return web.json_response({"hits": hits})
    app = web.Application()
    app.router.add_get("/identity", identity)
    app.router.add_get("/hits", count)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("upstream did not start")


async def measure(
    name: str, call: Callable[[], Awaitable[None]], requests: int, concurrency: int
) -> None:
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - started) * 1000)
    quantiles = statistics.quantiles(latencies, n=100)

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    throughput = (requests // concurrency * concurrency) / (time.perf_counter() - started)
    print(
        f"{name:<22} p50 {quantiles[49]:6.3f} ms  p99 {quantiles[98]:6.3f} ms  "
        f"{throughput:8.0f} req/s at concurrency {concurrency}"
    )


async def run(base: str, requests: int, concurrency: int) -> None:
    async with aiohttp.ClientSession() as session:

        async def bare() -> None:
            async with session.get(base + "/identity") as response:
                await response.json()

        await measure("bare ClientSession", bare, requests, concurrency)

    async with HttpClient() as client:

        async def shared() -> None:
            (await client.get(base + "/identity", upstream="Plex")).json()

        await measure("HttpClient", shared, requests, concurrency)
        stats = client.stats()["Plex"]
        print(
            f"{'':<22} stats: {stats.requests} requests, p95 of the last 256 "
            f"{stats.latency_percentile(95) or 0:.3f} ms, circuit {stats.circuit}"
        )

        before = (await client.get(base + "/hits", upstream="bench")).json()["hits"]
        await asyncio.gather(
            *(
                client.get(base + "/identity?slow=1", upstream="Plex", single_flight=True)
                for _ in range(100)
            )
        )
        after = (await client.get(base + "/hits", upstream="bench")).json()["hits"]
        print(f"single-flight          100 concurrent identical GETs -> {after - before} hit(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(port)])
    try:
        wait_ready(base + "/hits")
        asyncio.run(run(base, args.requests, args.concurrency))
    finally:
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    main()
