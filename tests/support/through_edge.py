"""WAKEDOCK_TEST_THROUGH_EDGE=1: the test suite's HTTP traffic through a real edge, and a failed
test for every request the WAF refused or scored (docs/edge.md, "The test suite through the edge").

A pytest plugin, registered by tests/conftest.py only when the variable is set (unset, nothing
here runs). One `wakedock edge run` (nginx + ModSecurity + OWASP CRS at paranoia level 2, as
rendered for production) for the session, on its own data directory, whose WakeDock is
`AppRelay` (support/app_relay.py): every TestClient request of every test goes through it.
`testserver` (TestClient's host) is one of the edge's admin hosts, as the host an installation
serves its API on is; a service host (`app.localhost`) meets the default block, with no
exclusion, as an unknown host does.

After each test that sent a request, ModSecurity's audit log is read up to a marker request of
the test's own: any transaction with a rule message (a 403 of the anomaly evaluation, or a
score below the threshold) fails the test, with the rule ids, the messages and the matched data.
Chromium's tests (tests/browser/) use no TestClient: each runs an edge of its own in front of its
`wakedock serve`, read by the same `AuditLogWatch` (support/browser_edge.py).
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.app_relay import AppRelay, EdgeRoute, route_testclients
from support.components import unavailable
from support.edge import TRUSTED, missing_packages, run_edge
from support.server import server_env

ENABLED = os.environ.get("WAKEDOCK_TEST_THROUGH_EDGE") == "1"
# The edge's admin hosts: WakeDock's defaults and TestClient's `testserver`.
ADMIN_HOSTS = ["testserver", "localhost", "127.0.0.1", "::1"]
MARKER_PATH = "/__wakedock-test-flush/"
MARKER_METHOD = "WAKEDOCK-FLUSH"

# Tests that send, on purpose, what the CRS refuses (their subject is WakeDock's own check of
# it, which the edge never lets the request reach): skipped in this mode, with the reason.
# Keys: "file", "file::test" (every parameter) or "file::test[param]" (on either database).
EXPECTED_BLOCKS: dict[str, str] = {
    "tests/users/test_users_api.py::test_xss_username_refused_not_echoed": (
        "a <script> user name (941100, 941110, 941160, 941320, 942130, 942370)"
    ),
    **{
        f"tests/services/test_api.py::test_bad_names_are_refused_naming_the_field_never_echoed"
        f"[{name}]": reason
        for name, reason in (
            ("<script>alert(1)</script>", "a <script> service name (941100 and four more)"),
            ("app; rm -rf /", "a shell line as a service name (932105, 932115)"),
            ("$(reboot)", "a shell expression as a service name (932130)"),
            ("app\\x00", "a NUL in a service name (920270, 920271)"),
        )
    },
    "tests/audit/test_audit_api.py::test_filters": (
        "one of its filter values is `' OR '1'='1` (942100 and six more); every filter with a "
        "normal value passes through the edge in tests/browser/test_edge_session.py"
    ),
    "tests/audit/test_audit_api.py::test_hostile_usernames_stay_one_escaped_event": (
        "a user name with a NUL and a forged JSON event (920270, 920271, 942260)"
    ),
    **{
        f"tests/secrets/test_secrets_api.py::test_traversal_never_reaches_wakedocks_own_keys"
        f"[{path}]": "an encoded ../ in the secret's path (930100, 930110)"
        for path in ("..%2Fwakedock%2Fjwt", "%2E%2E/wakedock/jwt", "x/%2E%2E/%2E%2E/wakedock/jwt")
    },
    "tests/proxy/test_proxy.py::test_handoff_refuses_foreign_targets[javascript:alert(1)]": (
        "a javascript: URL in `next` (941170, 941210)"
    ),
    "tests/account/test_account_sessions.py::test_the_notice_comes_from_a_fixed_list": (
        "a <script> in the notice's `done` (941100, 941110, 941160, 941320, 942130)"
    ),
    "tests/dashboard/test_services_page.py::test_search_and_state_filter_narrow_the_list": (
        "a <script> in the search box (941100, 941110, 941160, 941320, 942130)"
    ),
    "tests/web/test_sign_in_pages.py"
    "::test_markup_in_next_is_escaped_and_foreign_targets_become_root": (
        "markup in `next` (941100, 941110, 941160, 941320, 942130, 942260)"
    ),
}

# Tests of what WakeDock answers where the edge answers first, by design (not WakeDock's own
# traffic refused by the WAF).
EDGE_ANSWERS: dict[str, str] = {
    "tests/proxy/test_proxy.py::test_bodies_stream_both_ways": (
        "a 5 MiB body to a service host this edge renders no block for (the session's edge "
        "knows no test's services): the default block's 1 MiB limit answers 413"
    ),
    "tests/proxy/test_proxy.py"
    "::test_an_upstream_answering_before_reading_the_body_is_passed_through": (
        "bodies without a Content-Type to a service host (920340, 920341 at paranoia level 2: "
        "the CRS's policy for a service's traffic) and over the default block's 1 MiB (413)"
    ),
}


def _matches(key: str, nodeid: str) -> bool:
    """`key` is a file, a test, or a test with one parameter (of any database backend)."""
    name, _, params = nodeid.partition("[")
    wanted_name, _, wanted = key.partition("[")
    if wanted_name not in (name, name.split("::", 1)[0]):
        return False
    if not wanted:
        return True
    wanted, params = wanted.removesuffix("]"), params.removesuffix("]")
    return params == wanted or params.endswith(f"-{wanted}")


def _reason(nodeid: str) -> str | None:
    for table, why in ((EXPECTED_BLOCKS, "the WAF refuses it first"),
                       (EDGE_ANSWERS, "the edge answers first")):  # fmt: skip
        for key, reason in table.items():
            if _matches(key, nodeid):
                return f"through the edge, {why}: {reason}"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = _reason(item.nodeid)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@dataclass(frozen=True)
class Finding:
    """One transaction ModSecurity logged with rule messages."""

    status: int
    method: str
    host: str
    uri: str
    rules: tuple[tuple[str, str, str], ...]  # (id, message, matched data)

    def describe(self) -> str:
        lines = [f"  {self.status} {self.method} {self.host} {self.uri[:160]}"]
        lines += [f"      {rule} {message} | {data[:200]}" for rule, message, data in self.rules]
        return "\n".join(lines)


def _finding(line: bytes) -> tuple[str, Finding | None]:
    """The transaction's uri, and a finding if any rule matched."""
    try:
        transaction = json.loads(line)["transaction"]
    except (ValueError, KeyError, TypeError):
        return "", None
    request = transaction.get("request") or {}
    uri = str(request.get("uri", ""))
    messages = transaction.get("messages") or []
    if not messages:
        return uri, None
    rules = tuple(
        (
            str(m.get("details", {}).get("ruleId", "")),
            str(m.get("message", "")),
            str(m.get("details", {}).get("data", "")),
        )
        for m in messages
    )
    host = str(transaction.get("unique_id", "")).partition(" ")[0]
    status = int((transaction.get("response") or {}).get("http_code") or 0)
    return uri, Finding(status, str(request.get("method", "")), host, uri, rules)


class AuditLogWatch:
    """ModSecurity's audit log of one edge, from an offset up to a marker request sent to it
    (this session's edge, or a Chromium test's own: support/browser_edge.py)."""

    def __init__(
        self, path: Path, address: str, port: int, context: ssl.SSLContext, host: str
    ) -> None:
        self.path = path
        self.url = f"https://{address}:{port}"
        self.context = context
        self.host = host

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def findings_since(self, offset: int, timeout: float = 30) -> list[Finding]:
        # nginx writes a transaction's entry after its answer: a marker request of our own,
        # written after everything the test sent. Its method is one the CRS's policy refuses
        # (911100: 403, logged), so it is logged whatever is behind the edge; never reported.
        marker = self._send_marker()
        found = self._read_up_to(offset, marker, timeout)
        if found is not None:
            return found
        # nginx answered and logged the marker and its audit entry never came: a second marker
        # tells one lost entry from a log that ModSecurity does not write (as when a segment
        # left at its key stopped it: edge/audit_log_segment.py, docs/edge.md).
        lost = self._lost(marker, offset)
        second = self._send_marker()
        found = self._read_up_to(offset, second, timeout)
        if found is None:
            raise TimeoutError(f"{lost}; the second marker neither: {self._lost(second, offset)}")
        warnings.warn(f"ModSecurity's audit log lost an entry: {lost}", stacklevel=2)
        return found

    def _send_marker(self) -> str:
        marker = f"{MARKER_PATH}{secrets.token_hex(8)}"
        with httpx.Client(verify=self.context, timeout=30) as client:
            answer = client.request(
                MARKER_METHOD, f"{self.url}{marker}", headers={"Host": self.host}
            )
        if answer.status_code != 403 or "<center>nginx</center>" not in answer.text:
            # Not the WAF's refusal: whatever answered, ModSecurity never saw the marker.
            raise AssertionError(
                f"the marker {marker} was answered {answer.status_code} by something other "
                f"than the edge's WAF: {answer.text[:200]!r}"
            )
        return marker

    def _read_up_to(self, offset: int, marker: str, timeout: float) -> list[Finding] | None:
        """The findings from `offset` up to the marker's entry; None if it did not come."""
        deadline = time.monotonic() + timeout
        while True:
            lines = []
            if self.path.exists():  # ModSecurity creates it with its first entry
                with open(self.path, "rb") as log:
                    log.seek(offset)
                    lines = log.read().splitlines()
            found: list[Finding] = []
            for line in lines:
                uri, finding = _finding(line)
                if uri == marker:
                    return found
                if finding is not None and not finding.uri.startswith(MARKER_PATH):
                    found.append(finding)
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def _lost(self, marker: str, offset: int) -> str:
        return (
            f"the marker {marker} never reached {self.path} ({self._witness(marker)}; "
            f"{self._audit_log_state(marker, offset)}; {_writers(self.path)})"
        )

    def _witness(self, marker: str) -> str:
        """What nginx's own logs say of the marker: its access log has every answer, its error
        log every refusal of ModSecurity's connector (a refusal there and not in the audit log
        was never written to the audit log)."""
        said = []
        for name in ("error.log", "access.log"):
            try:
                text = self.path.with_name(name).read_text(errors="replace")
            except OSError:
                said.append(f"no {name}")
                continue
            seen = [line for line in text.splitlines() if marker in line]
            said.append(f"{name}: {seen[0][:300]!r}" if seen else f"{name}: not there")
        return "; ".join(said)

    def _audit_log_state(self, marker: str, offset: int) -> str:
        """What the audit log holds after `offset`: its lines, those that are no transaction
        (a torn or merged entry), and whether the marker is there in any form."""
        try:
            raw = self.path.read_bytes()
        except OSError as error:
            return f"audit log: {error.strerror}"
        lines = raw[offset:].splitlines()
        unread = [line for line in lines if not _finding(line)[0]]
        said = (
            f"audit log: {len(raw)} bytes, {len(lines)} lines after offset {offset}, "
            f"{len(unread)} not a transaction, the marker's path "
            f"{'there' if marker.encode() in raw else 'nowhere'} in it"
        )
        return f"{said} (first: {unread[0][:300]!r})" if unread else said


def _writers(path: Path) -> str:
    """The processes that hold `path` open, what each waits in, and whether the file each
    writes to is still the one at `path` (a replaced or deleted file is written in vain)."""
    try:
        inode = path.stat().st_ino
    except OSError:
        inode = -1
    said = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith(str(path)):
                    same = os.stat(fd).st_ino == inode
                    name = (proc / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                    wchan = (proc / "wchan").read_text()
                    said.append(
                        f"{proc.name} {name.decode(errors='replace')[:60]!r} waits in "
                        f"{wchan or 'nothing'}, {'the file' if same else 'another file'}"
                    )
        except OSError:
            continue  # gone, or not ours to read
    return "writers: " + ("; ".join(said) or "none")


def refusals(findings: list[Finding]) -> str:
    """A failed test's message: what the WAF refused or scored, rule by rule."""
    return "the WAF refused or scored requests of this test (ModSecurity audit log):\n" + (
        "\n".join(f.describe() for f in findings)
    )


@dataclass
class EdgeSession:
    route: EdgeRoute
    watch: AuditLogWatch


@pytest.fixture(scope="session")
def through_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeSession]:
    """The session's edge in front of the relay, every TestClient patched to go through it."""
    missing = missing_packages()
    if missing is not None:
        unavailable(missing)
    data_dir = tmp_path_factory.mktemp("through-edge") / "data"
    env = server_env(data_dir, {"WAKEDOCK_PROXY__ADMIN_HOSTS": json.dumps(ADMIN_HOSTS), **TRUSTED})
    relay = AppRelay()
    try:
        # Nothing changes behind this edge: a slow poll, no reload in the middle of a test.
        with run_edge(
            data_dir,
            env,
            wakedock_port=relay.port,
            wakedock_https=False,
            poll_seconds=600,
        ) as edge:
            route = EdgeRoute(edge.address, edge.port, edge.context(), relay)
            watch = AuditLogWatch(
                edge.out_dir / "logs" / "modsec_audit.json",
                edge.address,
                edge.port,
                route.context,
                host=ADMIN_HOSTS[0],
            )
            with route_testclients(route):
                yield EdgeSession(route, watch)
            route.close()
    finally:
        relay.close()


@pytest.fixture(autouse=True)
def waf_watch(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test if the WAF refused or scored any request it sent through the edge."""
    if request.node.path.parent.name == "browser":
        # Chromium's tests use no TestClient: each puts its own edge in front of its own
        # `wakedock serve` and checks it alike (support/browser_edge.py).
        yield
        return
    through_edge: EdgeSession = request.getfixturevalue("through_edge")
    relay = through_edge.route.relay
    sent = relay.relayed
    offset = through_edge.watch.offset()
    yield
    if relay.relayed == sent or request.node.get_closest_marker("waf_expected"):
        return
    findings = through_edge.watch.findings_since(offset)
    if findings:
        pytest.fail(refusals(findings), pytrace=False)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [
        "through the edge: every TestClient request, and Chromium's through an edge of each "
        "browser test's own (WAKEDOCK_TEST_THROUGH_EDGE=1)"
    ]
    return lines
