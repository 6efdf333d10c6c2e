"""Where the edge's nginx reaches WakeDock: an address on the same machine, or a DNS name (its
service name in the Compose stack, deploy/compose.yaml), and nothing that writes nginx syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from wakedock.config import Settings
from wakedock.edge.render import EdgeOptions, render_edge


def _nginx(tmp_path: Path, host: str, port: int = 8443) -> str:
    cert = tmp_path / "cert.pem"
    options = EdgeOptions(
        out_dir=tmp_path / "edge", cert=cert, key=tmp_path / "key.pem", wakedock_ca=cert
    )
    settings = Settings(data_dir=tmp_path, server={"host": host, "port": port})
    return render_edge(settings, [], options).files["nginx.conf"]


@pytest.mark.parametrize(
    ("host", "upstream"),
    [
        ("wakedock", "wakedock:8443"),  # the stack's service name
        ("WakeDock.internal.", "wakedock.internal:8443"),  # a fully qualified name
        ("10.0.3.7", "10.0.3.7:8443"),
        ("0.0.0.0", "127.0.0.1:8443"),  # noqa: S104  # listening everywhere: reached on loopback
        ("::", "[::1]:8443"),
        ("fd00::5", "[fd00::5]:8443"),
    ],
)
def test_the_upstream_is_the_configured_host(tmp_path: Path, host: str, upstream: str) -> None:
    nginx = _nginx(tmp_path, host)
    assert f"server {upstream};" in nginx


@pytest.mark.parametrize(
    "host",
    [
        "wakedock;}",  # would close the upstream block
        "wakedock resolve",  # a second server parameter
        "wake_dock",  # not a DNS name
        "-wakedock",
        "wakedock\n}",
        "a" * 64,  # a label longer than 63 characters
        "",
    ],
)
def test_a_host_that_is_no_address_or_name_is_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(ValueError, match=r"WakeDock address .* cannot be written"):
        _nginx(tmp_path, host)
