"""The production stack, deploy/compose.yaml, run with Debian's docker-compose 1.29 from the local
images (support/stack_images.py) and secret files written by scripts/stack-secrets.sh, then used
as a self-hoster would: through the edge's one published port on 127.0.0.1, over TLS 1.3. The
stack (tests/deploy/conftest.py) has the OpenBao override too, whose own tests are in
test_stack_openbao.py; they run after these, and end with `down -v`."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from support.docker_images import TEST_IMAGE
from support.engine import HTTP_READINESS
from support.login import LOGIN, login
from support.server import run_cli
from support.stack import (
    ADMIN,
    ADMIN_PASSWORD,
    STACK_SERVICES,
    Stack,
    create_admin,
    on_services_network,
)

pytestmark = pytest.mark.integration


def test_only_the_edge_is_published_and_only_on_loopback(stack: Stack) -> None:
    published = {
        name: [b for bound in (a["HostConfig"]["PortBindings"] or {}).values() for b in bound or []]
        for name, a in stack.containers().items()
    }
    assert set(published) == STACK_SERVICES
    assert published.pop("edge") == [{"HostIp": "127.0.0.1", "HostPort": str(stack.port)}]
    assert all(not bindings for bindings in published.values()), published


def test_only_the_socket_proxy_mounts_the_docker_socket(stack: Stack) -> None:
    mounting = {
        name: [m["Source"] for m in a["Mounts"] if "docker.sock" in m["Source"]]
        for name, a in stack.containers().items()
    }
    assert mounting.pop("socket-proxy") == ["/var/run/docker.sock"]
    assert not any(mounting.values()), mounting
    proxy = stack.containers()["socket-proxy"]
    assert [m["RW"] for m in proxy["Mounts"] if m["Destination"] == "/var/run/docker.sock"] == [
        False
    ]


def test_wakedock_is_ready_through_the_edge_over_tls_1_3(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get("/api/v1/health")
        tls = response.extensions["network_stream"].get_extra_info("ssl_object")
        assert tls.version() == "TLSv1.3"
    assert response.status_code == 200, response.text
    components = response.json()["components"]
    for component in ("database", "rate_limit_store", "container_engine"):
        assert components[component] == "ok", components


def test_the_database_is_postgresql_reached_over_tls(stack: Stack) -> None:
    # WakeDock's own sessions, seen by PostgreSQL: every one encrypted.
    query = (
        "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
        " WHERE a.usename = 'wakedock' AND a.backend_type = 'client backend'"
        " AND a.pid <> pg_backend_pid()"
    )
    out = stack.exec(
        "postgres",
        'PGPASSWORD="$(cat /run/secrets/postgres_password)" '
        f'psql -h /run/postgresql -U wakedock -d wakedock -At -F " " -c "{query}"',
    )
    sessions = [line.split() for line in out.splitlines() if line.strip()]
    assert sessions, "WakeDock holds no connection to PostgreSQL"
    assert all(s == ["t", "TLSv1.3"] for s in sessions), sessions


def test_postgresql_refuses_a_connection_without_tls(stack: Stack) -> None:
    # From WakeDock's container, on the data network, with WakeDock's own credentials.
    script = (
        "import psycopg, sys\n"
        "url = open('/run/secrets/database_url').read().strip()\n"
        "with psycopg.connect(url) as c:\n"
        "    own = 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'\n"
        "    print('tls', c.execute(own).fetchone()[0])\n"
        "try:\n"
        "    psycopg.connect(url.replace('sslmode=require', 'sslmode=disable')).close()\n"
        "    print('plain accepted')\n"
        "except psycopg.OperationalError as error:\n"
        "    print('plain refused:', error)\n"
    )
    out = stack.exec("wakedock", "python -", stdin=script)
    assert "tls True" in out
    assert "plain refused:" in out and "no encryption" in out, out


def test_a_first_admin_is_created_and_signs_in_through_the_edge(stack: Stack) -> None:
    create_admin(stack, ADMIN, ADMIN_PASSWORD)
    with stack.client() as client:
        wrong = login(client, ADMIN, ADMIN_PASSWORD + "x")
        signed_in = login(client, ADMIN, ADMIN_PASSWORD)
    assert wrong.status_code == 401, wrong.text
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["access_token"]


def test_login_attempts_are_counted_in_redis(stack: Stack) -> None:
    acl_password = "sed -n 's/^user wakedock on >\\([^ ]*\\) .*/\\1/p' /run/secrets/redis_acl"
    count = f'redis-cli --no-auth-warning --user wakedock --pass "$({acl_password})" dbsize'
    before = int(stack.exec("redis", count).strip())
    with stack.client() as client:
        assert login(client, "nobody-here", "not-the-password-42").status_code == 401
    assert int(stack.exec("redis", count).strip()) > before


@pytest.mark.security
def test_an_sql_injection_through_the_edge_is_refused_by_the_waf(stack: Stack) -> None:
    with stack.client() as client:
        attack = client.post(LOGIN, json={"username": "admin' OR '1'='1' --", "password": "x"})
        plain = client.get("/api/v1/health/live")
    assert attack.status_code == 403
    assert plain.status_code == 200


def _web_spec(name: str, answer: str, **fields: Any) -> dict[str, Any]:
    """busybox httpd answering `answer` on port 8080, public, no `network_mode` (docker.network
    decides it)."""
    return {
        "name": name,
        "image": TEST_IMAGE,
        "command": [
            "/bin/sh",
            "-c",
            f"echo {answer} > /tmp/index.html && exec httpd -f -p 8080 -h /tmp",
        ],
        "ports": [{"container_port": 8080}],
        "readiness": dict(HTTP_READINESS),
        "access": {"policy": "public"},
        **fields,
    }


def test_a_service_made_through_the_api_wakes_through_the_edge_on_the_services_network(
    stack: Stack, admin: dict[str, str]
) -> None:
    name = f"wd-stack-web-{secrets.token_hex(3)}"
    answer = f"answered-by-{name}"
    with stack.client() as client:
        created = client.post("/api/v1/services", json=_web_spec(name, answer), headers=admin)
        assert created.status_code == 201, created.text
        service = f"/api/v1/services/{created.json()['id']}"
        try:
            # A client that is not a browser is held while the service wakes, then answered
            # by the app itself, through the edge and WakeDock.
            visit = client.get("/", headers={"Host": f"{name}.localhost:{stack.port}"}, timeout=90)
            assert visit.status_code == 200, visit.text
            assert visit.text.strip() == answer
            status = client.get(f"{service}/status", headers=admin)
            assert status.status_code == 200, status.text
            assert status.json()["state"] == "running", status.json()
            assert status.json()["wake_phase"] == "ready", status.json()
            # The stack's WakeDock audited the wake, in PostgreSQL, read back through the API.
            audit = client.get(
                "/api/v1/audit", params={"type": "service_start", "target": name}, headers=admin
            )
            assert audit.status_code == 200, audit.text
            [woken] = audit.json()["events"]
            assert (woken["outcome"], woken["details"]["trigger"]) == ("success", "wake")

            [container] = on_services_network(stack, name)
            attrs = stack.engine.api.inspect_container(container["Id"])
            assert list(attrs["NetworkSettings"]["Networks"]) == [stack.services_network]
            assert attrs["HostConfig"]["NetworkMode"] == stack.services_network
            assert not attrs["HostConfig"]["PortBindings"], attrs["HostConfig"]["PortBindings"]
            assert not any(attrs["NetworkSettings"]["Ports"].values())
            # Of the stack, WakeDock alone is on the services network, and it has a way out.
            network = stack.engine.api.inspect_network(stack.services_network)
            assert network["Internal"] is False
            on_it = {c["Name"] for c in network["Containers"].values()}
            assert on_it == {stack.containers()["wakedock"]["Name"][1:], attrs["Name"][1:]}

            stopped = client.post(f"{service}/stop", headers=admin)
            assert stopped.status_code == 200, stopped.text
            state = stack.engine.api.inspect_container(container["Id"])["State"]
            assert state["Status"] == "exited", state
        finally:
            gone = client.delete(service, headers=admin)
    assert gone.status_code == 204, gone.text
    assert on_services_network(stack, name) == []


@pytest.mark.security
@pytest.mark.parametrize("network", ["host", "bridge", "data"])
def test_a_service_off_the_services_network_is_refused(
    stack: Stack, admin: dict[str, str], network: str
) -> None:
    # `data`: the stack's own network of PostgreSQL and Redis.
    mode = f"{stack.project}_data" if network == "data" else network
    name = f"wd-stack-off-{secrets.token_hex(3)}"
    with stack.client() as client:
        refused = client.post(
            "/api/v1/services", json=_web_spec(name, "never", network_mode=mode), headers=admin
        )
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "policy_violation", refused.text
    label = {"label": f"wakedock.service={name}"}
    assert stack.engine.api.containers(all=True, filters=label) == []


@pytest.mark.security
def test_the_socket_proxy_refuses_a_create_off_the_services_network(stack: Stack) -> None:
    # Past WakeDock's policy: straight to the socket proxy from WakeDock's container, a labelled
    # create on the host network.
    name = f"wd-stack-raw-{secrets.token_hex(3)}"
    body = {
        "Image": TEST_IMAGE,
        "Labels": {"wakedock.managed": "wakedock", "wakedock.service": name},
        "HostConfig": {"NetworkMode": "host"},
    }
    script = (
        "import http.client\n"
        "c = http.client.HTTPConnection('socket-proxy', 2375, timeout=10)\n"
        f"c.request('POST', '/containers/create?name=wakedock-{name}', body={json.dumps(body)!r},"
        " headers={'Content-Type': 'application/json'})\n"
        "print(c.getresponse().status)\n"
    )
    out = stack.exec("wakedock", "python -", stdin=script)
    assert out.strip() == "403", out
    label = {"label": f"wakedock.service={name}"}
    assert stack.engine.api.containers(all=True, filters=label) == []


def test_cis_check_reports_no_failure_on_the_stack(stack: Stack, tmp_path: Path) -> None:
    done = run_cli(tmp_path / "data", "cis-check", "--project", stack.project, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert len(report["targets"]) == len(STACK_SERVICES)
    failed = [
        (t["name"], f["id"], f["reason"])
        for t in report["targets"]
        for f in t["findings"]
        if f["verdict"] == "FAIL"
    ]
    assert not failed
