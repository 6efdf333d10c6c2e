"""Many services (issue #14): proxying to one awake service with 1,000 services defined, against
the same with 4, interleaved rounds in one run; and the server's memory after the load.

    .venv/bin/python bench/host_map.py [--rounds 5] [--seconds 5] [--connections 32]
                                       [--no-costs] [--uvloop]

Two `wakedock serve` (HTTPS, production defaults) run side by side. Each proxies `app`, the
proxy tests' Python app in a real container (Docker engine), woken once before measuring and
kept awake. The other services (3, or 999) are rows written straight into the server's SQLite
database before it starts, copies of `app`'s spec under other names and without a container:
only the host map sees them, as it would see services defined and asleep. wrk runs against each
server in turn (`Host: app.localhost`, 127.0.0.1 only), on `/` (proxied to the app) and on
`/_wakedock/status` (the proxy's own answer: the same host lookup without the upstream hop); the
figures are medians over the rounds and the ratio is 1,000 services over 4. RSS: the server
process (and any children) once the last round is over. First, in-process, what one rebuild of
the host map costs with 1,000 services, before and now (`--no-costs` skips it, for a run against
an older WakeDock). The servers run asyncio's own loop unless `--uvloop` (see `without_uvloop`).

Goals (issue #14): ratio >= 0.9, RSS < 200 MiB.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import docker
import httpx
import yaml

from common import (
    Server,
    code_line,
    machine_line,
    median,
    quiet_check,
    run_wrk,
    wakedock_command,
    wakedock_server,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.docker_images import ensure_python_image
from support.engine import app_spec
from support.fake_runtime import FakeRuntime
from wakedock.components import build_components
from wakedock.config import load_settings
from wakedock.context import RequestContext
from wakedock.services.snapshots import Actor
from wakedock.services.spec import ServiceSpec

APP = {"Host": "app.localhost"}


def prepare(image: str, network: str, services: int) -> Callable[[Path, dict[str, str]], None]:
    """`app` added with the CLI (its container is created), then `services - 1` rows copied
    from it straight into the database."""

    def run(data_dir: Path, env: dict[str, str]) -> None:
        path = data_dir.parent / "app.yaml"
        spec = app_spec(image, "app", network, idle_timeout_s=3600)
        path.write_text(yaml.safe_dump(spec))
        subprocess.run(wakedock_command("service", "add", str(path)), env=env, check=True)
        copy_app(data_dir / "wakedock.db", services)

    return run


def copy_app(database: Path, services: int) -> None:
    """Copies of the service `app` under other names, without a container, up to `services`."""
    with closing(sqlite3.connect(database)) as db, db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(services)")]
        row = db.execute("SELECT * FROM services WHERE name = 'app'").fetchone()
        app = dict(zip(columns, row, strict=True))
        copies = []
        for n in range(1, services):
            name = f"svc-{n:04d}"
            copies.append(
                {
                    **app,
                    "id": None,
                    "name": name,
                    "spec": app["spec"].replace('"name": "app"', f'"name": "{name}"'),
                    "container_ref": None,
                    "state": "stopped",
                }
            )
        marks = ", ".join("?" for _ in columns)
        db.executemany(
            f"INSERT INTO services ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608 - own schema
            [tuple(copy[c] for c in columns) for copy in copies],
        )
        count = db.execute("SELECT count(*) FROM services").fetchone()[0]
    if count != services:
        raise RuntimeError(f"{count} services in the database, {services} wanted")


def map_costs(services: int, repeat: int) -> None:
    """In-process, on a temporary SQLite database of `services` services (in-memory runtime):
    what a request paid before, about once a second while traffic flowed (ServiceManager.list()
    and the map: ORM rows, every spec parsed), and what the background poller pays now: a
    change-marker read each second, a reload on a change (and every 30 s)."""
    with tempfile.TemporaryDirectory(prefix="wd-bench-") as root:
        database = Path(root) / "wakedock.db"
        settings = load_settings(
            None, {"data_dir": Path(root) / "data", "database": {"url": f"sqlite:///{database}"}}
        )
        c = build_components(settings, runtime=FakeRuntime())
        spec = ServiceSpec.model_validate(app_spec("wakedock-test/busybox:1", "app", "none"))
        c.services.create(
            Actor("bench", "admin"), spec, RequestContext(actor="bench"), owner_id=None
        )
        copy_app(database, services)
        directory = c.directory

        def timed(work: Callable[[], object]) -> float:
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                work()
                samples.append((time.perf_counter() - started) * 1000)
            return median(samples)

        before = timed(lambda: {v.name: v for v in c.services.list()})
        reload = timed(lambda: directory._reload(True))  # the poller's own step, timed
        poll = timed(lambda: directory._reload(False))
        c.engine.dispose()
    print(f"host map, {services} services, medians of {repeat}:")
    print(f"  before: rebuilt on the request path   {before:7.1f} ms (about once a second)")
    print(
        f"  now: change-marker poll              {poll:7.1f} ms (once a second, in the background)"
    )
    print(f"  now: reload                          {reload:7.1f} ms (on a change, and every 30 s)")


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` and its children (workers, if any), in MiB."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    total_kib = 0
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def wake(server: Server) -> None:
    """The first request wakes `app` (held until it answers); then it stays awake. A refused
    handshake is tried again: on a loaded machine the server's handshake timeout can pass."""
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=120) as http:
        for attempt in range(5):
            try:
                reply = http.get("/", headers=APP)
                break
            except httpx.TransportError as exc:
                if attempt == 4:
                    log = server.log()
                    raise RuntimeError(f"app did not wake ({exc}); server log:\n{log}") from exc
                time.sleep(1)
        if reply.status_code != 200:
            raise RuntimeError(f"app did not wake: HTTP {reply.status_code}: {reply.text[:200]}")


def without_uvloop(root: Path) -> dict[str, str]:
    """Settings that hide uvloop from the server, so that uvicorn runs asyncio's own loop.

    With uvloop (in the virtualenv since the lean-proxy work of #14 began), this machine showed
    TLS handshakes of `wakedock serve` failing ("Invalid HTTP request received" in its log, the
    client's TLS record read as HTTP) and wrk rounds completing no request at all, with 4 and
    with 1,000 services alike: a fault of the server's TLS set-up under uvloop, not of the host
    map, which this benchmark is about."""
    shim = root / "uvloop"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "__init__.py").write_text('raise ImportError("hidden by bench/host_map.py")\n')
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": str(root) + (os.pathsep + path if path else "")}


def servers(
    stack: ExitStack, image: str, network: str, installation: str, uvloop: bool
) -> Iterator[tuple[int, Server]]:
    hidden = (
        {} if uvloop else without_uvloop(Path(stack.enter_context(tempfile.TemporaryDirectory())))
    )
    for count in (4, 1000):
        env = {
            "WAKEDOCK_DOCKER__INSTALLATION": f"{installation}-{count}",
            # The copies have no container: reconciling them (one engine query each) only slows
            # the start-up, and the host map reads them the same either way.
            "WAKEDOCK_DOCKER__RECONCILE_ON_START": "false",
            **hidden,
        }
        server = stack.enter_context(wakedock_server(env, prepare(image, network, count)))
        wake(server)
        yield count, server


# What is measured on the host `app.localhost`: the proxied answer of the app, and the proxy's
# own status answer (the same host lookup, without the upstream hop: more requests per second,
# so a host map that costs the request path shows more).
PATHS = {"/": "proxied to app", "/_wakedock/status": "routing only"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--no-costs", action="store_true", help="skip the in-process cost of the host map"
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="let the server use uvloop (see without_uvloop)"
    )
    args = parser.parse_args()
    print(machine_line())
    print(code_line())
    print(
        f"server event loop: {'uvloop if installed' if args.uvloop else 'asyncio (uvloop hidden)'}"
    )
    quiet_check()
    if not args.no_costs:
        map_costs(1000, repeat=5)
    client = docker.from_env()
    image = ensure_python_image(client)
    installation = f"wd-bench-{secrets.token_hex(3)}"
    network = client.networks.create(f"{installation}-net", driver="bridge")
    rps: dict[tuple[str, int], list[float]] = {(p, n): [] for p in PATHS for n in (4, 1000)}
    p99: dict[tuple[str, int], list[float]] = {key: [] for key in rps}
    stalled: dict[tuple[str, int], int] = dict.fromkeys(rps, 0)
    rss: dict[int, float] = {}
    try:
        with ExitStack() as stack:
            running = dict(servers(stack, image, str(network.name), installation, args.uvloop))
            for server in running.values():  # warm up: connections, caches
                run_wrk(f"{server.base_url}/", threads=2, connections=8, seconds=2, headers=APP)
            for n in range(args.rounds):
                order = (4, 1000) if n % 2 == 0 else (1000, 4)
                for path in PATHS:
                    for count in order:
                        result = run_wrk(
                            f"{running[count].base_url}{path}",
                            threads=2,
                            connections=args.connections,
                            seconds=args.seconds,
                            headers=APP,
                        )
                        key = (path, count)
                        # A round in which wrk completed no request at all (seen on both sides,
                        # before this change too, on a loaded machine) is counted, not averaged.
                        if result.requests == 0:
                            stalled[key] += 1
                        else:
                            rps[key].append(result.rps)
                            p99[key].append(result.p99_ms)
                        print(
                            f"round {n + 1}: {PATHS[path]:<14} {count:>4} services "
                            f"{result.rps:8.0f} req/s  p99 {result.p99_ms:7.1f} ms  "
                            f"errors {result.socket_errors or 'none'}",
                            flush=True,
                        )
            time.sleep(2)  # the load is over: a poll or two of the host map
            for count, server in running.items():
                rss[count] = rss_mib(server.process.pid)
    finally:
        for count in (4, 1000):
            for container in client.containers.list(
                all=True, filters={"label": f"wakedock.managed={installation}-{count}"}
            ):
                container.remove(force=True)
        network.remove()
    print(f"\n{args.rounds} interleaved rounds of {args.seconds} s, {args.connections} connections")
    for path, what in PATHS.items():
        for count in (4, 1000):
            key = (path, count)
            kept = len(rps[key])
            print(
                f"{what:<14} {count:>4} services: median {median(rps[key] or [0]):7.0f} req/s  "
                f"p99 {median(p99[key] or [0]):7.1f} ms  ({kept} rounds, {stalled[key]} stalled)"
            )
        few, many = median(rps[(path, 4)] or [0]), median(rps[(path, 1000)] or [0])
        ratio = f"{many / few:.2f}" if few else "n/a"
        print(f"{what:<14} ratio 1000 / 4: {ratio}   goal >= 0.9")
    print(f"RSS after the load: 4 services {rss[4]:.0f} MiB, 1000 services {rss[1000]:.0f} MiB")
    print("   goal < 200 MiB")


if __name__ == "__main__":
    main()
