"""WakeDock's service host cookie at the edge (edge/exclusions.py): the pattern the edge admits
is the shape of every token WakeDock issues, and only protected service hosts load the rules.
The attacks against them, through a real nginx + ModSecurity, are in test_direct_routes.py."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from wakedock.auth.keys import Keyring, SigningKey
from wakedock.auth.tokens import TokenCodec
from wakedock.clock import FakeClock
from wakedock.config import Settings
from wakedock.edge.exclusions import COOKIE_SHAPE
from wakedock.edge.render import SERVICE_COOKIE_RULES, render_edge
from wakedock.proxy.access import COOKIE_TYPE, SECURE_COOKIE

from .test_direct_render import ROUTES, VIEWS, _options


def test_every_service_host_cookie_wakedock_issues_has_the_admitted_shape() -> None:
    shape = re.compile(COOKIE_SHAPE)
    clock = FakeClock()
    # Short and long hosts and issuers; many keys and tokens, so every base64url character
    # (`-` and `_` among them) turns up in each part.
    for issuer, host in (("wakedock", "a.localhost"), ("x" * 200, "long-" * 40 + "example.org")):
        for _ in range(50):
            keyring = Keyring(SigningKey.from_secret(secrets.token_bytes(32)))
            codec = TokenCodec(
                keyring,
                issuer=issuer,
                audience=f"wakedock-api-{COOKIE_TYPE}:{host}",
                ttl_seconds=86_400,
                clock=clock,
                token_type=COOKIE_TYPE,
            )
            value, _expires = codec.issue(secrets.randbelow(10**9), secrets.token_urlsafe(32))
            assert shape.fullmatch(value), value
    # A payload is not: the pattern is anchored by the rule (`^(?:...)?$`), nothing but
    # base64url and two dots.
    assert not shape.fullmatch(value + "' OR 1=1 --")
    assert not shape.fullmatch(value.replace(".", "<", 1))


def test_only_protected_service_hosts_load_the_cookie_rules(tmp_path: Path, nginx: Path) -> None:
    settings = Settings(data_dir=tmp_path, edge={"direct_routes": True})
    config = render_edge(settings, VIEWS, _options(tmp_path), ROUTES)
    conf = config.files["nginx.conf"]
    blocks = {m[0]: m[1] for m in re.findall(r"# service (\S+)\n(.*?)\n    }\n", conf, re.S)}
    load = f"modsecurity_rules_file {tmp_path / 'edge' / SERVICE_COOKIE_RULES};"
    assert load in blocks["vault"]
    assert load not in blocks["wiki"] and load not in blocks["blog"]
    assert load not in conf.split("# service ")[0]  # nor the admin hosts
    rules = config.files[SERVICE_COOKIE_RULES]
    # The CRS's libinjection rules (SQL, XSS) among those told to skip that one cookie.
    for rule_id in (941100, 942100):
        assert f'SecRuleUpdateTargetById {rule_id} "!REQUEST_COOKIES:{SECURE_COOKIE}"' in rules
    assert "ARGS" not in rules and "REQUEST_HEADERS" not in rules
