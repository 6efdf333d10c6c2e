"""`wakedock edge run`'s supervisor with a real nginx: a changed service list is written,
checked and reloaded into the running nginx; a stop ends nginx."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from support.server import HOST, free_port
from wakedock.config import Settings
from wakedock.edge.modsec_log import WafLogIngest
from wakedock.edge.render import EdgeConfig, EdgeOptions, render_edge
from wakedock.edge.supervisor import EdgeSupervisor
from wakedock.services.snapshots import ServiceView
from wakedock.services.spec import ServiceSpec

pytestmark = pytest.mark.integration

TWO_MIB = b"x" * (2 * 1024 * 1024)


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


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost", "-days", "1",
         "-addext", "subjectAltName=DNS:localhost,DNS:*.localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _post(port: int, host: str, cert: Path) -> int:
    """A 2 MiB body to `host` through the edge: the answer's status."""
    context = ssl.create_default_context(cafile=str(cert))
    connection = http.client.HTTPSConnection(HOST, port, context=context, timeout=60)
    try:
        connection.request("POST", "/upload", body=TWO_MIB, headers={"Host": host})
        return connection.getresponse().status
    except (ConnectionError, ssl.SSLError):
        return 0  # nginx may close while the body is still being sent
    finally:
        connection.close()


def test_a_new_service_is_reloaded_into_the_running_nginx(tmp_path: Path, nginx: Path) -> None:
    cert, key = _certificate(tmp_path)
    port = free_port()
    # WakeDock itself is not running: only nginx's own answers are looked at.
    settings = Settings(data_dir=tmp_path / "data", server={"port": free_port()})
    options = EdgeOptions(
        out_dir=tmp_path / "edge", cert=cert, key=key, wakedock_ca=cert, listen=f"{HOST}:{port}"
    )
    services: list[ServiceView] = []

    def render() -> EdgeConfig:
        return render_edge(settings, list(services), options)

    ingest = WafLogIngest(options.audit_log, lambda event, context: None)
    supervisor = EdgeSupervisor(render, ingest, nginx, poll_seconds=0.3)
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(supervisor.run()))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        # Unknown host: the default block, whose body limit is 1 MiB (the admin API's).
        while (answer := _post(port, "wiki.localhost", cert)) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer == 413
        services.append(_view("wiki"))  # a service is created
        while supervisor.reloads == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert supervisor.reloads == 1
        assert "server_name wiki.localhost;" in options.conf_path.read_text()
        # Its own block now (16 MiB for services): the body passes nginx, whose upstream (no
        # WakeDock here) fails. New workers take the new configuration: poll until they do.
        while (
            answer := _post(port, "wiki.localhost", cert)
        ) == 413 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer not in (0, 413), answer
    finally:
        supervisor.request_stop()
        thread.join(60)
    assert status == [0]
    pid_file = options.out_dir / "nginx.pid"
    assert not pid_file.exists()  # nginx stopped with the supervisor
