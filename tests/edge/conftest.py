"""The edge's fixtures: Debian's nginx, its ModSecurity module and the OWASP CRS, or a skip
(a failure in CI, where WAKEDOCK_REQUIRE_INTEGRATION=1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.components import unavailable
from wakedock.edge.render import CRS_RULES, MODSECURITY_MODULE

PACKAGES = "apt-get install nginx libnginx-mod-http-modsecurity modsecurity-crs"


@pytest.fixture
def nginx() -> Path:
    """The nginx binary, with the ModSecurity module and the CRS rules beside it."""
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        unavailable(f"nginx is not installed ({PACKAGES})")
        raise AssertionError  # unreachable
    if not MODSECURITY_MODULE.exists():
        unavailable(f"the nginx ModSecurity module is not installed ({PACKAGES})")
    if not (CRS_RULES / "REQUEST-949-BLOCKING-EVALUATION.conf").exists():
        unavailable(f"the OWASP CRS is not installed ({PACKAGES})")
    return Path(binary)
