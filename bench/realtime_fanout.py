"""Benchmark: live-event fan-out to 2,000 connected clients, and server memory per idle connection.

Target (issue 5): with 2,000 clients connected (half Server-Sent Events on /api/v1/events, half
WebSocket on /ws), an event published server-side reaches every client with p99 under 250 ms,
measured per client from publish to receipt over 20 publishes (after one unmeasured warm-up
publish). Memory: (server RSS with 2,000 idle clients - RSS with none) / 2,000.

The server is a real `python -m medianest_server serve` on SQLite with `[redis] url` set and
`[auth] api_requests_per_minute = 0`; clients sign in with a personal API token. Events are
published the way another instance would publish them: PUBLISH of the event JSON on the channel
RedisEventBus listens on. Clients run in separate processes (aiohttp); each event carries the
CLOCK_MONOTONIC time of its publish, which is system-wide on Linux, so a client computes its own
latency. Client-side processing (a process reading 1,000 sockets) is part of the figure.

Baseline, same run, same client processes: a bare aiohttp server holding 2,000 WebSockets that
broadcasts a POSTed event with a plain send loop (no auth, no bus, no SSE).

A private redis-server on a free 127.0.0.1 port is started for the run (so no other Redis user
receives the benchmark's events) unless --redis-url is given. Everything listens on 127.0.0.1,
every wait is bounded, and every process started here is stopped at the end.

    .venv/bin/python bench/realtime_fanout.py [--clients 2000] [--publishes 20]
        [--client-processes N] [--redis-url redis://127.0.0.1:6379/0]

--client-processes defaults to 2, or 1 on a machine with 2 CPUs (so the server keeps one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchsite import free_port, seed_database, write_config

TARGET_P99_MS = 250.0
PUBLISH_GAP_SECONDS = 0.25  # between publishes, once every client has the previous one
PUBLISH_WAIT_SECONDS = 15.0  # the most we wait for all clients to receive one publish
CONNECT_CONCURRENCY = 50  # per client process: stay under the server's listen backlog
CLIENT_LIFETIME_SECONDS = 600  # a client process exits by itself after this, whatever happens

BARE_SERVER = textwrap.dedent(
    """
    import resource, sys
    from aiohttp import web
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sockets = set()

    async def ws(request):
        socket = web.WebSocketResponse(heartbeat=15, compress=False)
        await socket.prepare(request)
        sockets.add(socket)
        await socket.send_str('{"type":"subscriptions","topics":["all"]}')
        try:
            async for _ in socket:
                pass
        finally:
            sockets.discard(socket)
        return socket

    async def publish(request):
        message = '{"type":"event","event":' + await request.text() + '}'
        for socket in list(sockets):
            try:
                await socket.send_str(message)
            except ConnectionError:
                pass
        return web.Response(text="sent")

    async def ready(request):
        return web.Response(text="ready")

    app = web.Application()
    app.router.add_get("/ws", ws)
    app.router.add_post("/publish", publish)
    app.router.add_get("/health/ready", ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_process(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready in {seconds:g} s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes] | None, seconds: float = 30) -> float:
    """SIGTERM, wait (then SIGKILL); returns how long the process took to exit."""
    if proc is None or proc.poll() is not None:
        return 0.0
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    return time.monotonic() - started


# -- the load: client processes ---------------------------------------------------------------


async def client_main(args: argparse.Namespace) -> None:
    """One client process: connect args.sse + args.ws clients, then report each publish's
    latencies (one JSON line per publish) until told to quit on stdin."""
    import aiohttp

    raise_fd_limit()
    loop = asyncio.get_running_loop()
    headers = json.loads(args.headers)
    expected = 0
    received: dict[int, dict[str, list[float]]] = {}
    reported: set[int] = set()

    def emit(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def report(seq: int) -> None:
        if seq in reported:
            return
        reported.add(seq)
        got = received.pop(seq, {"sse": [], "ws": []})
        missing = expected - len(got["sse"]) - len(got["ws"])
        emit({"seq": seq, "sse": got["sse"], "ws": got["ws"], "missing": missing})

    def record(now: float, event: dict[str, Any], via: str) -> None:
        data = event["data"]
        seq = int(data["seq"])
        got = received.setdefault(seq, {"sse": [], "ws": []})
        got[via].append((now - float(data["t0"])) * 1000)
        if len(got["sse"]) + len(got["ws"]) == expected:
            report(seq)

    async def sse_client(session: aiohttp.ClientSession, ready: asyncio.Event) -> None:
        async with session.get(f"{args.url}/api/v1/events", headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"SSE answered {response.status}")
            ready.set()
            content = response.content
            while line := await content.readline():
                if line.startswith(b"data: "):
                    record(time.monotonic(), json.loads(line[6:]), "sse")

    async def ws_client(session: aiohttp.ClientSession, ready: asyncio.Event) -> None:
        async with session.ws_connect(f"{args.url}/ws", headers=headers) as ws:
            async for message in ws:
                now = time.monotonic()
                body = json.loads(message.data)
                if body["type"] == "event":
                    record(now, body["event"], "ws")
                elif body["type"] == "subscriptions":
                    ready.set()

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        tasks: list[asyncio.Task[None]] = []

        async def connect(kind: str) -> bool:
            async with gate:
                ready = asyncio.Event()
                run = sse_client if kind == "sse" else ws_client
                task = asyncio.create_task(run(session, ready))
                tasks.append(task)
                waiter = asyncio.create_task(ready.wait())
                await asyncio.wait([task, waiter], timeout=30, return_when="FIRST_COMPLETED")
                waiter.cancel()
                return ready.is_set()

        # interleaved, so neither transport is always first in the server's delivery order
        both = min(args.sse, args.ws)
        kinds = ["sse", "ws"] * both + ["sse"] * (args.sse - both) + ["ws"] * (args.ws - both)
        results = await asyncio.gather(*(connect(kind) for kind in kinds))
        expected = sum(results)
        emit({"ready": expected, "failed": len(results) - expected})

        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        async with asyncio.timeout(CLIENT_LIFETIME_SECONDS):
            while line := (await stdin.readline()).decode().strip():
                command, _, value = line.partition(" ")
                if command == "flush":
                    report(int(value))
                elif command == "quit":
                    break
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class ClientProcess:
    proc: asyncio.subprocess.Process
    ready: int = 0
    failed: int = 0

    async def line(self, seconds: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(seconds):
            raw = await self.proc.stdout.readline()
        if not raw:
            raise RuntimeError(f"client process exited with {await self.proc.wait()}")
        value: dict[str, Any] = json.loads(raw)
        return value

    async def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()


async def start_clients(
    url: str, headers: dict[str, str], sse: int, ws: int, processes: int
) -> list[ClientProcess]:
    clients = []
    for index in range(processes):
        share_sse = sse // processes + (1 if index < sse % processes else 0)
        share_ws = ws // processes + (1 if index < ws % processes else 0)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--_client",
            "--url",
            url,
            "--headers",
            json.dumps(headers),
            "--sse",
            str(share_sse),
            "--ws",
            str(share_ws),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024,
        )
        clients.append(ClientProcess(proc))
    for client in clients:
        hello = await client.line(120)
        client.ready, client.failed = hello["ready"], hello["failed"]
    return clients


async def stop_clients(clients: list[ClientProcess]) -> None:
    for client in clients:
        with contextlib.suppress(ConnectionError):
            await client.send("quit")
    for client in clients:
        try:
            async with asyncio.timeout(30):
                await client.proc.wait()
        except TimeoutError:
            client.proc.kill()
            await client.proc.wait()


@dataclass
class Fanout:
    sse: list[float] = field(default_factory=list)
    ws: list[float] = field(default_factory=list)
    last: list[float] = field(default_factory=list)  # per publish: the slowest client
    missing: int = 0


async def measure_fanout(
    clients: list[ClientProcess], publish: Any, publishes: int, first_seq: int
) -> Fanout:
    """`publishes` events (plus one unmeasured warm-up first), each once every client has
    the previous one; `publish(seq)` sends one."""
    result = Fanout()
    for seq in range(first_seq, first_seq + publishes + 1):
        await publish(seq)
        reports = []
        for client in clients:
            try:
                reports.append(await client.line(PUBLISH_WAIT_SECONDS))
            except TimeoutError:
                await client.send(f"flush {seq}")
                reports.append(await client.line(5))
        assert all(r["seq"] == seq for r in reports), reports
        if seq > first_seq:  # the first one warms up
            for r in reports:
                result.sse += r["sse"]
                result.ws += r["ws"]
                result.missing += r["missing"]
            result.last.append(max((x for r in reports for x in (*r["sse"], *r["ws"])), default=0))
        await asyncio.sleep(PUBLISH_GAP_SECONDS)
    return result


# -- the two servers --------------------------------------------------------------------------


def event_json(seq: int) -> str:
    from medianest_server.events import make_event

    event = make_event("bench.fanout.published", {"seq": seq, "t0": time.monotonic()})
    return json.dumps(event.to_dict(), separators=(",", ":"))


def redis_channel() -> str:
    from medianest_server.events import RedisEventBus

    channel: str = inspect.signature(RedisEventBus.__init__).parameters["channel"].default
    return channel


@dataclass
class Run:
    name: str
    sse: int
    ws: int
    fanout: Fanout
    rss_idle_kb: int
    rss_connected_kb: int
    cpu_ms_per_publish: float
    idle_cpu_percent: float
    connected: int
    failed: int
    stop_seconds: float


async def run_against(
    name: str,
    server: subprocess.Popen[bytes],
    url: str,
    headers: dict[str, str],
    publish: Any,
    args: argparse.Namespace,
    sse: int,
) -> tuple[Run, list[ClientProcess]]:
    # warm-up: a few clients and publishes, so one-time costs are not counted as per-connection
    warm = await start_clients(url, headers, min(sse, 10), 10, 1)
    await measure_fanout(warm, publish, 1, first_seq=1_000_000)
    await stop_clients(warm)
    await asyncio.sleep(1.0)  # let the server see those clients go
    rss_idle = rss_kb(server.pid)
    clients = await start_clients(url, headers, sse, args.clients - sse, args.client_processes)
    idle_started, idle_cpu = time.monotonic(), cpu_seconds(server.pid)
    await asyncio.sleep(args.idle_seconds)  # idle: heartbeats and sign-in re-checks only
    rss_connected = rss_kb(server.pid)
    idle_rate = (cpu_seconds(server.pid) - idle_cpu) / (time.monotonic() - idle_started)
    started, cpu = time.monotonic(), cpu_seconds(server.pid)
    fanout = await measure_fanout(clients, publish, args.publishes, first_seq=1)
    # the server's CPU for the publishes: what it used meanwhile, less what it uses when idle
    busy = cpu_seconds(server.pid) - cpu - idle_rate * (time.monotonic() - started)
    cpu_ms_per_publish = busy * 1000 / (args.publishes + 1)
    run = Run(
        name,
        sse,
        args.clients - sse,
        fanout,
        rss_idle,
        rss_connected,
        cpu_ms_per_publish,
        idle_rate * 100,
        sum(c.ready for c in clients),
        sum(c.failed for c in clients),
        0.0,
    )
    return run, clients


async def bench_medianest(args: argparse.Namespace, tmp: Path, redis_url: str) -> Run:
    import redis

    config = write_config(tmp, redis={"url": redis_url})
    token = await seed_database(config, admin=False, password=None, token=True)
    assert token is not None
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIANEST_")}
    env["MEDIANEST_PLUGINS"] = "none"
    log = tmp / "medianest.log"
    argv = [sys.executable, "-m", "medianest_server", "serve", "--config", str(config)]
    server = start_process([*argv, "--port", str(port)], log, env)
    publisher = redis.Redis.from_url(redis_url, socket_timeout=5)
    channel = redis_channel()
    clients: list[ClientProcess] = []
    try:
        wait_http(f"{url}/health/ready", server, log)

        async def publish(seq: int) -> None:
            publisher.publish(channel, event_json(seq))

        headers = {"Authorization": f"Bearer {token}"}
        run, clients = await run_against(
            "MediaNest", server, url, headers, publish, args, sse=args.clients // 2
        )
        await stop_clients(clients)
        clients = []
        run.stop_seconds = stop(server)
        return run
    finally:
        await stop_clients(clients)
        stop(server)
        publisher.close()


async def bench_bare(args: argparse.Namespace, tmp: Path) -> Run:
    import aiohttp

    script = tmp / "bare_ws_server.py"
    script.write_text(BARE_SERVER)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "bare.log"
    server = start_process([sys.executable, str(script), str(port)], log, dict(os.environ))
    clients: list[ClientProcess] = []
    try:
        wait_http(f"{url}/health/ready", server, log)
        async with aiohttp.ClientSession() as http:

            async def publish(seq: int) -> None:
                async with http.post(f"{url}/publish", data=event_json(seq)) as response:
                    await response.read()

            run, clients = await run_against("bare aiohttp", server, url, {}, publish, args, sse=0)
            await stop_clients(clients)
            clients = []
            run.stop_seconds = stop(server)
            return run
    finally:
        await stop_clients(clients)
        stop(server)


# -- the report -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(label: str, values: list[float], target: str = "") -> str:
    p50, p99 = percentile(values, 0.50), percentile(values, 0.99)
    top = max(values) if values else float("nan")
    return f"  {label:<34} {p50:8.1f} {p99:8.1f} {top:8.1f} {len(values):>8} {target}"


def print_run(run: Run, publishes: int) -> None:
    fanout = run.fanout
    transports = f"{run.sse} SSE + {run.ws} WebSocket" if run.sse else f"{run.ws} WebSocket"
    print(
        f"{run.name}: {transports} requested, {run.connected} connected"
        f" ({run.failed} failed), {publishes} publishes measured, {fanout.missing} receipts"
        " missing"
    )
    print(f"  {'publish -> receipt (ms)':<34} {'p50':>8} {'p99':>8} {'max':>8} {'samples':>8}")
    print(row("every client", fanout.sse + fanout.ws, f"target p99 < {TARGET_P99_MS:g} ms"))
    if run.sse and run.ws:
        print(row("  SSE clients", fanout.sse))
        print(row("  WebSocket clients", fanout.ws))
    print(row("last client of each publish", fanout.last))
    per_connection = (run.rss_connected_kb - run.rss_idle_kb) / max(1, run.connected)
    print(
        f"  server RSS: {run.rss_idle_kb / 1024:.1f} MB with no clients,"
        f" {run.rss_connected_kb / 1024:.1f} MB with {run.connected} idle clients"
        f" -> {per_connection:.1f} KB per idle connection; idle CPU"
        f" {run.idle_cpu_percent:.1f}% of one core"
    )
    print(
        f"  server CPU per publish: {run.cpu_ms_per_publish:.1f} ms (above its idle use);"
        f" stop (SIGTERM to exit, SIGKILL at 30 s) after the clients left:"
        f" {run.stop_seconds:.1f} s"
    )


@contextlib.contextmanager
def private_redis(tmp: Path) -> Any:
    """A throw-away redis-server on a free 127.0.0.1 port, no persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed; pass --redis-url")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc, 10)


async def orchestrate(args: argparse.Namespace) -> None:
    raise_fd_limit()  # the servers started from here inherit it
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with contextlib.ExitStack() as stack:
            redis_url = args.redis_url or stack.enter_context(private_redis(tmp))
            medianest = await bench_medianest(args, tmp, redis_url)
        bare = await bench_bare(args, tmp)
    load_after = os.getloadavg()
    print(
        f"{os.cpu_count()} CPUs; load average before {load_before[0]:.2f}, after"
        f" {load_after[0]:.2f}; {args.client_processes} client processes (aiohttp)"
    )
    print_run(medianest, args.publishes)
    print_run(bare, args.publishes)
    for label, key in (("p99", 0.99), ("p50", 0.50)):
        ours = percentile(medianest.fanout.sse + medianest.fanout.ws, key)
        theirs = percentile(bare.fanout.ws, key)
        print(f"MediaNest / bare aiohttp, {label} per client: {ours / theirs:.2f}x")
    ours_kb = (medianest.rss_connected_kb - medianest.rss_idle_kb) / max(1, medianest.connected)
    theirs_kb = (bare.rss_connected_kb - bare.rss_idle_kb) / max(1, bare.connected)
    print(f"MediaNest / bare aiohttp, memory per idle connection: {ours_kb / theirs_kb:.2f}x")
    cpu_ratio = medianest.cpu_ms_per_publish / bare.cpu_ms_per_publish
    print(f"MediaNest / bare aiohttp, server CPU per publish: {cpu_ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--publishes", type=int, default=20)
    parser.add_argument(
        "--client-processes",
        type=int,
        # two, but leave the server a CPU of its own: on a 2-CPU machine a second client
        # process mostly measures the load generator starving the server
        default=max(1, min(2, (os.cpu_count() or 1) - 1)),
    )
    parser.add_argument("--redis-url", default="", help="default: a private redis-server")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=20.0,
        help="connected and idle before publishing: longer than a heartbeat (15 s), so the idle"
        " CPU figure includes one round of pings and sign-in re-checks",
    )
    parser.add_argument("--_client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--headers", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--sse", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ws", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._client:
        asyncio.run(client_main(args))
    else:
        asyncio.run(orchestrate(args))


if __name__ == "__main__":
    main()
