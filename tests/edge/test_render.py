"""`wakedock edge render`: the configuration nginx is given, and nginx's own verdict on it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from support.server import run_cli
from wakedock.config import Settings
from wakedock.edge.render import EdgeOptions, render_edge, write_edge
from wakedock.edge.supervisor import check_config
from wakedock.services.snapshots import ServiceView
from wakedock.services.spec import ServiceSpec


def _view(name: str, hosts: list[str]) -> ServiceView:
    now = datetime.now(UTC)
    spec = ServiceSpec.model_validate(
        {"name": name, "image": "nginx:1", "hosts": hosts, "readiness": {"type": "tcp", "port": 80}}
    )
    return ServiceView(
        id=1, name=name, owner_id=None, source="api", spec=spec, writable_root_granted=False,
        runtime="engine", container_ref=None, state="stopped", stop_reason=None, created_at=now,
        updated_at=now, last_started_at=None, last_stopped_at=None,
    )  # fmt: skip


def _options(tmp_path: Path) -> EdgeOptions:
    cert = tmp_path / "cert.pem"
    return EdgeOptions(
        out_dir=tmp_path / "edge", cert=cert, key=tmp_path / "key.pem", wakedock_ca=cert
    )


def test_the_configuration_follows_the_settings_and_the_services(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        server={"port": 9443, "header_timeout_seconds": 7, "body_timeout_seconds": 21},
        proxy={"base_domain": "apps.example.com", "admin_hosts": ["wakedock.example.com"]},
    )
    config = render_edge(settings, [_view("wiki", ["docs.example.org"])], _options(tmp_path))
    nginx = config.files["nginx.conf"]
    assert set(re.findall(r"ssl_protocols ([^;]*);", nginx)) == {"TLSv1.3"}  # both sides
    assert "server_name wakedock.example.com;" in nginx
    assert "server_name wiki.apps.example.com docs.example.org;" in nginx
    assert "server 127.0.0.1:9443;" in nginx
    assert "client_header_timeout 7s;" in nginx
    assert "client_body_timeout 21s;" in nginx
    assert "send_timeout 21s;" in nginx
    assert '"max-age=31536000; includeSubDomains"' in nginx
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in nginx
    crs = config.files["modsecurity/crs-setup.conf"]
    assert "setvar:tx.paranoia_level=2" in crs
    assert "setvar:tx.inbound_anomaly_score_threshold=5" in crs
    assert "setvar:tx.outbound_anomaly_score_threshold=4" in crs
    modsec = config.files["modsecurity/modsecurity.conf"]
    assert "SecRuleEngine On" in modsec
    assert "SecAuditLogFormat JSON" in modsec
    assert "SecAuditLogParts AHZ" in modsec  # no headers, no bodies
    # The numeric-Host exclusion only where an admin host is an address: not here.
    assert "920350" not in nginx


@pytest.mark.parametrize("host", ["evil.example.com;}", "a b", "x\n}"])
def test_a_name_that_could_write_nginx_configuration_is_refused(tmp_path: Path, host: str) -> None:
    settings = Settings(data_dir=tmp_path, proxy={"admin_hosts": [host]})
    with pytest.raises(ValueError, match="cannot be written"):
        render_edge(settings, [], _options(tmp_path))


@pytest.mark.integration
def test_nginx_accepts_the_rendered_configuration(tmp_path: Path, nginx: Path) -> None:
    data = tmp_path / "data"
    result = run_cli(data, "edge", "render", "--out", str(tmp_path / "edge"))
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "edge" / "nginx.conf") in result.stdout
    # Without 127.0.0.1 in trusted_proxies WakeDock would see the edge as every client.
    assert "trusted_proxies does not include 127.0.0.1" in result.stderr
    settings = Settings(data_dir=data, proxy={"admin_hosts": ["localhost", "127.0.0.1", "::1"]})
    options = EdgeOptions(
        out_dir=tmp_path / "edge2", cert=data / "tls" / "cert.pem", key=data / "tls" / "key.pem",
        wakedock_ca=data / "tls" / "cert.pem",
    )  # fmt: skip
    config = render_edge(settings, [_view("wiki", [])], options)
    assert write_edge(config)
    assert not write_edge(config)  # unchanged: nothing to reload
    check_config(nginx, config)
    assert "SecRuleRemoveById 920350" in config.files["nginx.conf"]


def test_a_service_whose_name_cannot_be_written_is_left_to_the_default_block(
    tmp_path: Path,
) -> None:
    odd = _view("wiki", [])
    odd = ServiceView(**{**odd.__dict__, "name": "bad;name"})
    config = render_edge(Settings(data_dir=tmp_path), [odd, _view("blog", [])], _options(tmp_path))
    nginx = config.files["nginx.conf"]
    assert "bad;name" not in nginx
    assert "server_name blog.localhost;" in nginx
    assert "server_name _;" in nginx
