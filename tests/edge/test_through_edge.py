"""The machinery of WAKEDOCK_TEST_THROUGH_EDGE=1 (support/through_edge.py, support/app_relay.py)
with a real `wakedock edge run`: a TestClient's requests really cross nginx + ModSecurity, the
app gets them as the test wrote them, and a request the WAF refuses or scores is found in
ModSecurity's audit log and named with its rules (what fails a test in that mode).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from support.app_relay import AppRelay, EdgeRoute, route_testclients
from support.components import unavailable
from support.edge import TRUSTED, Edge, missing_packages, run_edge
from support.server import server_env
from support.through_edge import ADMIN_HOSTS, AuditLogWatch

pytestmark = [pytest.mark.integration, pytest.mark.security]


class Boom(Exception):
    """What the app raises: the test must see it, as TestClient shows it in process."""


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {
            "host": request.headers.get("host"),
            "client": request.client.host if request.client else None,
            "forwarded_for": request.headers.get("x-forwarded-for"),
            "query": request.url.query,
            "body": body.decode(),
        },
        headers={"X-App": "echo"},
    )


async def boom(request: Request) -> JSONResponse:
    raise Boom("the app failed")


async def fine(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


APP = Starlette(
    routes=[
        Route("/echo", echo, methods=["GET", "POST"]),
        Route("/boom", boom),
        Route("/{path:path}", fine, methods=["GET", "PUT", "POST"]),
    ]
)


@pytest.fixture(scope="module")
def edge_route(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EdgeRoute, Edge]]:
    """Plain `wakedock edge run` (render.py's rules only) in front of the relay."""
    missing = missing_packages()
    if missing is not None:
        unavailable(missing)
    data_dir = tmp_path_factory.mktemp("through-edge") / "data"
    env = server_env(data_dir, {"WAKEDOCK_PROXY__ADMIN_HOSTS": json.dumps(ADMIN_HOSTS), **TRUSTED})
    relay = AppRelay()
    try:
        with run_edge(data_dir, env, wakedock_port=relay.port, wakedock_https=False) as edge:
            route = EdgeRoute(edge.address, edge.port, edge.context(), relay)
            with route_testclients(route):
                yield route, edge
            route.close()
    finally:
        relay.close()


def audit_log_of(route: EdgeRoute, edge: Edge) -> AuditLogWatch:
    """ModSecurity's audit log of the session's edge, its marker sent to an admin host."""
    return AuditLogWatch(
        edge.out_dir / "logs" / "modsec_audit.json",
        edge.address,
        edge.port,
        route.context,
        host=ADMIN_HOSTS[0],
    )


def test_testclient_requests_cross_the_edge_and_blocks_are_found(
    edge_route: tuple[EdgeRoute, Edge],
) -> None:
    route, edge = edge_route
    watch = audit_log_of(route, edge)
    offset = watch.offset()
    client = TestClient(APP, base_url="https://testserver", client=("203.0.113.7", 5000))

    answer = client.post(
        "/echo?page=2", json={"note": "it's fine"}, headers={"X-Forwarded-For": "198.51.100.1"}
    )
    assert answer.status_code == 200, answer.text
    # The app's answer, through nginx: nginx's Server header and the edge's security headers.
    assert answer.headers["x-app"] == "echo"
    assert answer.headers["server"] == "nginx"
    assert answer.headers["x-frame-options"] == "DENY"
    # ...and the request as the test wrote it (nginx would have replaced X-Forwarded-For).
    assert answer.json() == {
        "host": "testserver",
        "client": "203.0.113.7",
        "forwarded_for": "198.51.100.1",
        "query": "page=2",
        "body": '{"note":"it\'s fine"}',
    }
    assert watch.findings_since(offset) == []
    # nginx logs a request after its answer: by the marker request above, it has.
    assert "POST /echo?page=2" in edge.access_log()

    with pytest.raises(Boom):
        client.get("/boom")

    offset = watch.offset()
    refused = client.get("/echo", params={"search": "1' OR '1'='1"})
    assert refused.status_code == 403
    assert refused.headers["server"] == "nginx"
    (finding,) = watch.findings_since(offset)
    assert (finding.status, finding.method, finding.host) == (403, "GET", "testserver")
    rules = [rule for rule, _, _ in finding.rules]
    assert "949110" in rules
    assert any(rule.startswith("942") for rule in rules), rules
    assert "942" in finding.describe()


@pytest.mark.usefixtures("edge_route")
def test_a_protected_services_hand_off_passes_on_an_admin_host_with_a_port() -> None:
    # As WakeDock redirects to it: the admin URL names its port, Host carries it.
    client = TestClient(APP, base_url="https://localhost:8444")
    target = "https://app.localhost/reports?page=2"
    for path in ("/auth/proxy", "/login"):
        answer = client.get(path, params={"next": target}, follow_redirects=False)
        assert answer.status_code == 200, (path, answer.text)
    # Only `next`, only there: the same URL in another field or on another path still scores.
    assert client.get("/auth/proxy", params={"to": target}).status_code == 403
    assert client.get("/api/v1/users", params={"next": target}).status_code == 403
    assert client.get("/auth/proxy", params={"next": "javascript:alert(1)"}).status_code == 403


@pytest.mark.usefixtures("edge_route")
def test_a_file_is_uploaded_as_the_files_api_describes_it() -> None:
    client = TestClient(APP, base_url="https://localhost")
    body = b"services:\n  web:\n    image: nginx:1\n"
    for headers in ({"Content-Type": "application/octet-stream"}, {}):
        answer = client.put("/api/v1/files/blog/compose.yaml", content=body, headers=headers)
        assert answer.status_code == 200, (headers, answer.text)
    # Only a PUT under /api/v1/files/: the same body elsewhere is refused as before.
    octet = {"Content-Type": "application/octet-stream"}
    assert client.put("/api/v1/services/blog", content=body, headers=octet).status_code == 403
    assert client.post("/api/v1/files/blog/x", content=body, headers=octet).status_code == 403
    # And a file's content is still read when its type makes it fields.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    shell = b"x=1; cat /etc/passwd"
    assert client.put("/api/v1/files/blog/run.sh", content=shell, headers=form).status_code == 403


@pytest.mark.usefixtures("edge_route")
def test_a_browsers_csp_report_reaches_wakedock() -> None:
    client = TestClient(APP, base_url="https://localhost")
    report = b'{"csp-report": {"document-uri": "https://localhost/", "violated-directive": "x"}}'
    csp = {"Content-Type": "application/csp-report"}
    answer = client.post("/csp-report", content=report, headers=csp)
    assert answer.status_code == 200, answer.text
    # A report of an attempted injection quotes it: another site's script, its first words.
    quoted = (
        b'[{"type": "csp-violation", "body": {"documentURL": "https://localhost/services", '
        b'"blockedURL": "https://evil.example/x.js", "sample": "<script>alert(1)</script>"}}]'
    )
    reports = {"Content-Type": "application/reports+json"}
    answer = client.post("/csp-report", content=quoted, headers=reports)
    assert answer.status_code == 200, answer.text
    # Only a POST to the report endpoint: the same type elsewhere is refused as before.
    assert client.post("/api/v1/users", content=report, headers=csp).status_code == 403
    assert client.put("/csp-report", content=report, headers=csp).status_code == 403
    assert client.post("/csp-reports", content=quoted, headers=reports).status_code == 403


def test_the_service_forms_spec_and_yaml_pass_only_there(
    edge_route: tuple[EdgeRoute, Edge],
) -> None:
    route, edge = edge_route
    watch = audit_log_of(route, edge)
    offset = watch.offset()
    client = TestClient(APP, base_url="https://localhost")
    spec_yaml = (
        "# the team's notes\nname: notes\nimage: wakedock-test/busybox:1\n"
        "command: [/bin/sh, -c, 'httpd -f -p 8080 -h /www']\n"
        "env: {URL: 'https://example.org/?a=1&b=2', QUERY: \"select 1 -- x\"}\n"
        "readiness: {type: tcp, port: 8080}\nports: [{container_port: 8080}]\n"
    )
    form = {
        "mode": "fields",
        "command": "/bin/sh\n-c\nhttpd -f -p 8080 -h /www && echo ready",
        "env": "URL=https://example.org/?a=1&b=2",
        "readiness_test": "CMD-SHELL\nwget -q -O /dev/null http://127.0.0.1:8080/ || exit 1",
    }
    for path in ("/services/new", "/services/notes/edit"):
        answer = client.post(path, data={"mode": "yaml", "yaml": spec_yaml})
        assert answer.status_code == 200, [f.describe() for f in watch.findings_since(offset)]
        answer = client.post(path, data=form)
        assert answer.status_code == 200, [f.describe() for f in watch.findings_since(offset)]
    # Only those fields, only a POST there: the same words elsewhere still score.
    assert client.post("/services/new", data={"display_name": form["command"]}).status_code == 403
    assert client.post("/services/notes/stop", data={"yaml": spec_yaml}).status_code == 403
    assert client.post("/account/password", data={"yaml": spec_yaml}).status_code == 403
    assert client.put("/services/new", data={"yaml": spec_yaml}).status_code == 403
    # And the other rules still read them: markup in the YAML is refused.
    hostile = {"mode": "yaml", "yaml": "name: x\ndisplay_name: <script>alert(1)</script>"}
    assert client.post("/services/new", data=hostile).status_code == 403
