"""Shared helpers for the benchmarks: a real `wakedock serve` over HTTPS, a user, wrk.

The server process and the login are the tests' own helpers (tests/support/server.py and
login.py, which need no pytest): one way to start WakeDock and sign in, tested by the suite.
No test fixture is used: the server runs with the production argon2 defaults (64 MiB, t=3,
p=1) unless the caller's environment overrides them. Every request goes to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import platform
import re
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.login import access_token
from support.server import HOST, serve, wakedock_command
from support.server import WakeDockProcess as Server

BENCH_USER = "bench"


def _bench_env(data_dir: Path) -> dict[str, str]:
    # Drop any WAKEDOCK_* setting of the caller's shell: the figures are for the defaults.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAKEDOCK_")}
    env["WAKEDOCK_DATA_DIR"] = str(data_dir)
    return env


@contextmanager
def wakedock_server(
    extra_env: dict[str, str] | None = None,
    prepare: Callable[[Path, dict[str, str]], None] | None = None,
    *,
    https: bool = True,
    ready_timeout: float | None = None,
) -> Iterator[Server]:
    """`wakedock serve` (HTTPS unless `https` is False, production defaults) on a fresh
    temporary data directory.

    `extra_env` adds settings (or PYTHONPATH, for another source tree); `prepare(data_dir,
    env)` runs before the server starts (e.g. to add services with the CLI).
    """
    root = Path(tempfile.mkdtemp(prefix="wd-bench-"))
    data_dir = root / "data"
    env = {**_bench_env(data_dir), **(extra_env or {})}
    # A plain `kill` of the benchmark must not leave the server running.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if prepare is not None:
            prepare(data_dir, env)
        options = {} if ready_timeout is None else {"ready_timeout": ready_timeout}
        with serve(
            data_dir, env, https=https, host=HOST, log_path=root / "server.log", **options
        ) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(143)


def strong_password() -> str:
    # No username or product name in it (the password policy refuses those).
    return "Qx7!" + secrets.token_urlsafe(24)


def create_user(server: Server, username: str, password: str, role: str = "viewer") -> None:
    """`wakedock user create` through the real CLI, on the server's data directory."""
    result = subprocess.run(
        wakedock_command("user", "create", username, "--role", role, "--password-stdin"),
        input=password + "\n",
        text=True,
        capture_output=True,
        env=_bench_env(server.data_dir),
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"user create failed:\n{result.stdout}\n{result.stderr}")


def argon2_parameters(server: Server, username: str) -> str:
    """The argon2 cost stored in the user's hash, e.g. 'm=65536,t=3,p=4' (SQLite data dir)."""
    with closing(sqlite3.connect(server.data_dir / "wakedock.db")) as db:
        row = db.execute(
            "SELECT password_hash FROM users WHERE username = ?", (username,)
        ).fetchone()
    if row is None:
        raise RuntimeError(f"no user {username!r} in the database")
    # $argon2id$v=19$m=65536,t=3,p=4$salt$hash
    return str(row[0]).split("$")[3]


def login(server: Server, username: str, password: str) -> str:
    """POST /api/v1/auth/login (JSON); returns the access token."""
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=30) as http:
        return access_token(http, username, password)


def get_status(server: Server, path: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{server.base_url}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=10, context=server.ssl_context()) as response:
        return int(response.status)


# -- wrk -----------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_DURATION = re.compile(r"^([\d.]+)(us|ms|s|m)$")


def _ms(text: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"unparseable wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: str | None
    raw: str

    @property
    def timeouts(self) -> int:
        """Requests wrk gave up on (no answer within its 2 s timeout)."""
        found = re.search(r"timeout (\d+)", self.socket_errors or "")
        return int(found.group(1)) if found else 0


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rps and total and p50 and p99):
        raise ValueError(f"unexpected wrk output (was --latency given?):\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:\s+(.*)$", output, re.M)
    return WrkResult(
        requests=int(total.group(1)),
        rps=float(rps.group(1)),
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=errors.group(1).strip() if errors else None,
        raw=output,
    )


def run_wrk(
    url: str, *, threads: int, connections: int, seconds: int, headers: dict[str, str] | None = None
) -> WrkResult:
    """Run wrk with --latency against `url` (127.0.0.1 only, HTTPS or plain HTTP); fail on
    any non-2xx answer."""
    if not url.startswith((f"https://{HOST}:", f"http://{HOST}:")):
        raise ValueError("benchmarks only send traffic to 127.0.0.1")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    args = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    done = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = parse_wrk(done.stdout)
    if result.non_2xx:
        raise RuntimeError(f"{result.non_2xx} non-2xx answers from {url}:\n{done.stdout}")
    return result


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process and its live children (several workers) have used so
    far, from /proc (Linux only)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the command name: state is field 3, the parent 4, utime and stime 14 and 15.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def cpu_busy_percent(seconds: float = 1.0) -> float | None:
    """How busy the CPUs are (all processes), sampled from /proc/stat; None off Linux."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return idle, sum(fields)

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return 100.0 * (1 - (idle1 - idle0) / total) if total > 0 else None


def preamble() -> None:
    """What was measured where: the code, the machine and how busy it was before the run."""
    print(code_line())
    print(machine_line())
    quiet_check()


def quiet_check() -> None:
    """Print how busy the machine is before measuring: other load skews every figure."""
    busy = cpu_busy_percent()
    if busy is None:
        return
    note = "" if busy < 15 else "  WARNING: something else is using the CPUs, figures are skewed"
    print(f"CPU busy before the run: {busy:.0f}%{note}")


def code_line() -> str:
    """Which WakeDock was measured: the commit, and whether src/ had uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    if head.returncode != 0:
        return "code: not a git checkout"
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    import wakedock

    where = Path(wakedock.__file__).resolve().parent
    outside = "" if where.is_relative_to(repo / "src") else f"; wakedock imported from {where}"
    return f"code: {head.stdout.strip()}{' + uncommitted src/ changes' if dirty else ''}{outside}"


def machine_line() -> str:
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout or wrk.stderr).splitlines()[0].split(" Copyright")[0]
    return (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, {wrk_version}; wrk and the server share "
        "the same cores"
    )
