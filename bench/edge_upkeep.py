"""The edge's upkeep (issue #14): how long `edge run`'s supervisor takes, with a real nginx +
ModSecurity + CRS, to apply a service change, to serve a replaced certificate, and to answer
again after its nginx master was killed.

    .venv/bin/python bench/edge_upkeep.py [--rounds 5]

Each round: a service appended to the list the supervisor renders (its change marker moves;
the poll is 10 minutes, so only the marker can be seen), timed until `applied.json` has a new
generation; a certificate and key replaced on disk, timed until a new TLS connection is shown
the new certificate; SIGKILL to the nginx master, timed until a TLS handshake succeeds again. The
watch interval is the default (0.5 s). The baseline, in each round: one `nginx -t` (nginx
parsing the configuration and the whole CRS, which every reload and start does too). Medians
and the worst round. 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.server import HOST, free_port
from wakedock.config import Settings
from wakedock.edge.modsec_log import WafLogIngest
from wakedock.edge.render import EdgeOptions, render_edge
from wakedock.edge.supervisor import EdgeSupervisor, check_config
from wakedock.edge.upkeep import read_applied
from wakedock.services.snapshots import ServiceView
from wakedock.services.spec import ServiceSpec


def _certificate(cert: Path, key: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost", "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip


def _view(name: str) -> ServiceView:
    now = datetime.now(UTC)
    spec = ServiceSpec.model_validate(
        {"name": name, "image": "nginx:1", "readiness": {"type": "tcp", "port": 80}}
    )
    return ServiceView(
        id=1, name=name, owner_id=None, source="api", spec=spec, writable_root_granted=False,
        runtime="engine", container_ref=None, state="stopped", stop_reason=None, created_at=now,
        updated_at=now, last_started_at=None, last_stopped_at=None,
    )  # fmt: skip


def _served(port: int) -> bytes:
    """The certificate a new TLS connection is shown (b"" when nothing answers)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((HOST, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            return tls.getpeercert(binary_form=True) or b""
    except OSError:
        return b""


def _generation(out_dir: Path) -> int:
    applied = read_applied(out_dir)
    return applied.generation if applied else 0


def _timed(condition: Callable[[], bool], what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > 60:
            raise SystemExit(f"{what}: no change within 60 s")
        time.sleep(0.01)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wakedock-edge-upkeep-"))
    cert, key = work / "cert.pem", work / "key.pem"
    _certificate(cert, key)
    port = free_port()
    options = EdgeOptions(
        out_dir=work / "edge", cert=cert, key=key, wakedock_ca=cert, listen=f"{HOST}:{port}"
    )
    settings = Settings(data_dir=work / "data", server={"port": free_port()})
    services: list[ServiceView] = []
    supervisor = EdgeSupervisor(
        lambda: render_edge(settings, list(services), options),
        WafLogIngest(options.audit_log, lambda event, context: None),
        Path("/usr/sbin/nginx"), poll_seconds=600, progress=lambda message: None,
        services_marker=lambda: len(services), max_quick_failures=100,
    )  # fmt: skip
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    figures: dict[str, list[float]] = {
        "nginx -t": [], "service change": [], "certificate": [], "nginx killed": []
    }  # fmt: skip
    try:
        _timed(lambda: _served(port) != b"", "start")
        for n in range(args.rounds):
            time.sleep(1)
            # The baseline: one `nginx -t` (a full parse of the CRS) in the same round.
            start = time.monotonic()
            check_config(Path("/usr/sbin/nginx"), render_edge(settings, list(services), options))
            figures["nginx -t"].append(time.monotonic() - start)
            generation = _generation(options.out_dir)
            services.append(_view(f"s{n}"))
            figures["service change"].append(
                _timed(lambda g=generation: _generation(options.out_dir) > g, "service change")
            )
            time.sleep(1)
            new_cert, new_key = work / "new-cert.pem", work / "new-key.pem"
            _certificate(new_cert, new_key)
            expected = ssl.PEM_cert_to_DER_cert(new_cert.read_text())
            new_key.replace(key)
            new_cert.replace(cert)
            figures["certificate"].append(
                _timed(lambda e=expected: _served(port) == e, "certificate")
            )
            time.sleep(1)
            pid = supervisor.nginx_pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            figures["nginx killed"].append(
                _timed(
                    lambda p=pid: supervisor.nginx_pid not in (p, None) and _served(port) != b"",
                    "restart",
                )
            )
    finally:
        supervisor.request_stop()
        thread.join(60)
    print(f"edge upkeep, {args.rounds} rounds, watch 0.5 s (seconds: median, worst)")
    for what, values in figures.items():
        print(f"  {what:15} {statistics.median(values):.2f}  {max(values):.2f}")


if __name__ == "__main__":
    main()
