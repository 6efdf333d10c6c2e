"""The edge's CRS exclusions, each as narrow as it can be (docs/edge.md, "CRS exclusions").

On the admin hosts: a password is not SQL, a service spec's command and environment are a
program's words, the sign-in detour's `next` is encoded once more than usual and names another
host, a file is uploaded as bytes, and a CSP report has its own content type.

On protected service hosts, WakeDock's service host cookie: the OWASP CRS reads none of it, and
anything in it that is not shaped like a token WakeDock issues is refused. Its visitors send
that cookie with every request: a signed token of about 400 characters (proxy/access.py,
auth/tokens.py). At paranoia level 2 about a hundred CRS rules read every cookie's value
(REQUEST_COOKIES), each after its transformations: measured with callgrind, that cookie more
than doubled ModSecurity's instructions per request (5.6 M without it, 12.4 M with it). Yet its
value is WakeDock's alone: nginx strips it before the request reaches the service (the
`$edge_service_cookie` map) and WakeDock verifies it as a signed token. So:

- a rule refuses (403) a request whose cookie of that name is anything but empty or a token of
  exactly WakeDock's shape (an HS256 JWT under a 16-hex-digit key id: base64url in three
  dot-separated parts, a fixed header, a 43-character signature). A value of that alphabet
  cannot carry an SQL, script or shell payload;
- the CRS rules that read cookie values and names are told, by id, not to read that one cookie
  (`SecRuleUpdateTargetById`): 12.4 M instructions became 7.8 M (and 5.6 M became 6.4 M
  without the cookie, hence protected hosts only). ModSecurity 3.0.9 checks per-request
  exclusions (`ctl:ruleRemoveTarget*`) against every rule and variable: by tag that cost about
  as much as it saved, by id half of it. Every other cookie is inspected as before, and so is
  the raw Cookie header (about twenty rules: protocol, scanners, Java, shellshock).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from wakedock.auth.dependencies import SESSION_COOKIE
from wakedock.proxy.pages import PREFIX

# A password is any string the user chose: an apostrophe and two dashes in it are not SQL. Its
# fields (form `password`, JSON `password`, `current_password`, `new_password`) are left out of
# every CRS rule, on the admin hosts' sign-in, account and MFA paths only, the Account page's
# password forms and the console's new user form included (docs/edge.md).
_PASSWORD_FIELDS = ("ARGS:password", "ARGS:json.password", "ARGS:json.current_password",
                    "ARGS:json.new_password", "ARGS:current_password",
                    "ARGS:new_password")  # fmt: skip
PASSWORD_EXCLUSION = (
    "SecRule REQUEST_FILENAME "
    '"@rx ^/(?:api/v1/(?:auth|users)(?:/[a-z0-9/_-]*)?|login|account/(?:password|mfa/disable)'
    '|admin/users)$" '
    '"id:1001,phase:1,pass,nolog,t:none,'
    + ",".join(f"ctl:ruleRemoveTargetByTag=OWASP_CRS;{field}" for field in _PASSWORD_FIELDS)
    + '"'
)

# A service spec's `command` and `env` are a program's own words: a shell line, a URL, a quoted
# word or `--` in them is what people write, and each alone scores 5 at paranoia level 2 (932150,
# 931130, 942110, 942440). Those two fields, on the admin hosts only, are left out of the rules
# tagged command execution, SQL injection and remote file inclusion; every other field of the
# spec (its name included) and every other rule (XSS, PHP, protocol) still applies to them. The
# spec is then WakeDock's to validate, and its policy's (and the caller needs services:write).
# ModSecurity 3.0.9 takes no pattern in `ctl:ruleRemoveTarget*`, and `env` names are the user's:
# hence the update of targets by tag, which takes one (docs/edge.md).
# (A `|` inside the pattern would be read as the list's separator: one pattern per field.)
_SPEC_FIELDS = "!ARGS:/^json\\.command\\./|!ARGS:/^json\\.env\\./"
SPEC_EXCLUSIONS = tuple(
    f'SecRuleUpdateTargetByTag "{tag}" "{_SPEC_FIELDS}"'
    for tag in ("attack-rce", "attack-sqli", "attack-rfi")
)
# A secret's value is whatever the service needs: a database password, a key, a URL with
# credentials, a PEM block. Quotes, `--`, `<` and `scheme://` in it are not an attack on
# WakeDock, which stores it in Vault / OpenBao, never reads it as SQL, markup or a command, and
# shows it only escaped, after a fresh code. On the admin hosts only: the API's JSON
# `values.<key>` (PUT /api/v1/secrets/<path>) and the console's `value.<key>` fields are left
# out of every CRS rule (the names are the user's keys: a pattern, hence an update of targets),
# and the console's `new_value` on its write path only. The key names, the path and every other
# field are inspected as usual.
SECRET_EXCLUSIONS = (
    'SecRuleUpdateTargetByTag "OWASP_CRS" "!ARGS:/^json\\.values\\./"',
    'SecRuleUpdateTargetByTag "OWASP_CRS" "!ARGS:/^value\\./"',
    'SecRule REQUEST_FILENAME "@streq /admin/secrets/write" '
    '"id:1007,phase:1,pass,nolog,t:none,ctl:ruleRemoveTargetByTag=OWASP_CRS;ARGS:new_value"',
)
# The sign-in detour of a protected service carries the service's address, encoded once more,
# in `next`: 920230 ("multiple URL encoding", 3 points) on every page of it would leave two
# points before any other warning blocks a sign-in. And when the admin host is reached with a
# port (`localhost:8444`), the service's address no longer ends with the request's Host: 931130
# ("off-domain reference", 5 points) refused every hand-off. WakeDock checks `next` itself (a
# foreign target is refused). Only `next`, only on those pages.
NEXT_EXCLUSION = (
    'SecRule REQUEST_FILENAME "@rx ^/(?:login(?:/code)?|mfa/enrol(?:/confirm)?|auth/proxy)$" '
    '"id:1002,phase:1,pass,nolog,t:none,ctl:ruleRemoveTargetById=920230;ARGS:next,'
    'ctl:ruleRemoveTargetById=931130;ARGS:next"'
)
# The files API takes a file's bytes as `application/octet-stream` (its OpenAPI), a type CRS
# 3.3's allowed list lacks (920420), or with no type at all (`curl -T`: 920340, 920341). The
# body is WakeDock's to store as it is; only a PUT, only under /api/v1/files/.
FILES_EXCLUSION = (
    'SecRule REQUEST_FILENAME "@beginsWith /api/v1/files/" '
    '"id:1004,phase:1,pass,nolog,t:none,chain"',
    '    SecRule REQUEST_METHOD "@streq PUT" "t:none,ctl:ruleRemoveById=920340,'
    'ctl:ruleRemoveById=920341,ctl:ruleRemoveById=920420"',
)
# Browsers post CSP violation reports as `application/csp-report`, a type the CRS's list lacks
# (920420), and a report quotes what was blocked: another site's address (931130), the start of
# an inline script. The CRS would refuse exactly the reports of an attempted injection, when they
# matter most. So a POST to the report endpoint only: its type allowed and its body not read by
# ModSecurity; WakeDock limits it (8 KiB, a rate per address), parses it as JSON and audits it.
CSP_REPORT_EXCLUSION = (
    'SecRule REQUEST_FILENAME "@streq /csp-report" "id:1005,phase:1,pass,nolog,t:none,chain"',
    '    SecRule REQUEST_METHOD "@streq POST" '
    '"t:none,ctl:ruleRemoveById=920420,ctl:requestBodyAccess=Off"',
)

# The create / edit page of a service (dashboard/form.py) posts the same spec as form fields,
# and for power users as YAML: a YAML text is `#` comments (942440), `{}`, `[]` and `:` by the
# dozen (942430), and, like the API's JSON above, command lines and URLs (932xxx, 931130). The
# spec's words (the `command`, `env` and probe `test` controls) and the YAML text area are left
# out of the rules tagged command execution, SQL injection and remote file inclusion (and the
# YAML of 941340, below): only those four fields, only in a POST to /services/new or
# /services/<name>/edit. Their other rules (XSS, PHP, protocol, file access) still apply;
# WakeDock parses the YAML with safe_load (no aliases, 32 KiB), then validates and
# policy-checks the spec as the API's.
_FORM_SPEC_FIELDS = ("ARGS:command", "ARGS:env", "ARGS:readiness_test", "ARGS:yaml")
SERVICE_FORM_EXCLUSION = (
    'SecRule REQUEST_FILENAME "@rx ^/services/(?:new|[a-z0-9-]{1,63}/edit)$" '
    '"id:1006,phase:1,pass,nolog,t:none,chain"',
    '    SecRule REQUEST_METHOD "@streq POST" "t:none,'
    + ",".join(
        f"ctl:ruleRemoveTargetByTag={tag};{field}"
        for tag in ("attack-rce", "attack-sqli", "attack-rfi")
        for field in _FORM_SPEC_FIELDS
    )
    # 941340 (IE's XSS filter patterns) reads YAML's flow style (`[a, 'b'] c: {`) as markup;
    # every other XSS rule still reads the text area.
    + ",ctl:ruleRemoveTargetById=941340;ARGS:yaml"
    + '"',
)

# Ours, below the CRS's ids (900000 and up), after 1001 and 1002 above (1004-1006 elsewhere,
# 1010 and up for the token fields below).
RULE_ID = 1003
# An HS256 JWT as PyJWT writes WakeDock's: the header {"alg":"HS256","kid":"<16 hex>","typ":"JWT"}
# (sorted keys, no spaces: a fixed prefix and 70 characters), claims, a 32-byte signature.
# `[.]`, not `\.`: the same text is a PCRE in the rule and a Python pattern in the tests.
COOKIE_SHAPE = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6I[A-Za-z0-9_-]{41}"
    "[.]eyJ[A-Za-z0-9_-]{16,16000}"
    "[.][A-Za-z0-9_-]{43}"
)
_COOKIE_NAME = re.compile(r"[A-Za-z0-9_-]+")

# WakeDock's other tokens, where clients hand them back: the session cookie on every request to
# an admin host, a form's CSRF token, the sign-in's MFA challenge, a refresh token, the setup
# token, a session id in the console's revoke forms, a protected host's sign-in ticket. Each is
# random base64url (or a JWT of it): about one token in 500 has `--` followed later by `-`,
# which CRS 942440 reads as an SQL comment (5 points, refused), and now and then another rule
# trips on one (930120 on a signature starting `nsr`, 942450 on `-0xabc`). Seen for real: a
# sign-in through the edge refused 403 at its code step (942440 in `challenge`). So a field
# whose one value is exactly a token's shape is left out of every CRS rule for that request:
# letters, digits, `-`, `_` (and a JWT's two dots) cannot carry SQL, script, shell or a path.
# Any other value, or a second value of the same field, is read by the CRS as before.
_URLSAFE_32_BYTES = "[A-Za-z0-9_-]{43}"  # secrets.token_urlsafe(32), a CSRF token (a MAC)
_URLSAFE_16_BYTES = "[A-Za-z0-9_-]{22}"  # a session's id: secrets.token_urlsafe(16)


@dataclass(frozen=True)
class TokenField:
    """A field that carries one of WakeDock's tokens, the token's shape, and the paths it is
    posted to when its name is too common to exempt everywhere."""

    target: str
    shape: str
    paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Written into a ModSecurity rule as a pattern: plain path characters only.
        if not all(re.fullmatch(r"/[a-z0-9/_-]+", path) for path in self.paths):
            raise ValueError(f"paths {self.paths!r} cannot be written into a ModSecurity rule")


TOKEN_FIELDS = (
    TokenField(f"REQUEST_COOKIES:{SESSION_COOKIE}", _URLSAFE_32_BYTES),
    TokenField("ARGS:csrf_token", _URLSAFE_32_BYTES),
    TokenField("ARGS:challenge", COOKIE_SHAPE, ("/login/code",)),
    TokenField("ARGS:json.challenge_token", COOKIE_SHAPE, ("/api/v1/auth/mfa/verify",)),
    TokenField("ARGS:json.refresh_token", _URLSAFE_32_BYTES, ("/api/v1/auth/refresh",)),
    TokenField("ARGS:json.token", _URLSAFE_32_BYTES, ("/api/v1/auth/setup",)),
    TokenField(
        "ARGS:session", _URLSAFE_16_BYTES, ("/admin/sessions/revoke", "/account/sessions/revoke")
    ),
    TokenField("ARGS:ticket", COOKIE_SHAPE, (f"{PREFIX}/auth",)),
)
TOKEN_RULE_ID = 1010


def token_field_rules() -> tuple[str, ...]:
    """The rules, loaded before the CRS (phase 2, once every field is parsed), that leave a
    token-shaped field out of the CRS for the request it came with."""
    rules: list[str] = []
    for number, field in enumerate(TOKEN_FIELDS):
        # The count first: on most requests the field is absent and the chain stops there.
        rules.append(
            f'SecRule &{field.target} "@eq 1" '
            f'"id:{TOKEN_RULE_ID + number},phase:2,pass,nolog,t:none,chain"'
        )
        if field.paths:
            paths = "|".join(field.paths)
            rules.append(f'    SecRule REQUEST_FILENAME "@rx ^(?:{paths})$" "t:none,chain"')
        rules.append(
            f'    SecRule {field.target} "@rx ^(?:{field.shape})$" '
            f'"t:none,ctl:ruleRemoveTargetByTag=OWASP_CRS;{field.target}"'
        )
    return tuple(rules)


# `SecRule TARGETS "operator" "id:N,...` once a rule's continuation lines are joined.
_RULE = re.compile(r'^\s*SecRule\s+(\S+)\s.*?"id:(\d+)', re.MULTILINE)
_COOKIE_TARGETS = ("REQUEST_COOKIES", "REQUEST_COOKIES_NAMES")


@functools.cache
def crs_cookie_rules(crs_rules: Path) -> tuple[tuple[int, str], ...]:
    """(id, collection) for each of the installed CRS's request rules that reads every cookie's
    value or name. Read from the rules themselves, so a CRS upgrade that adds one is covered;
    the application exclusion packages (REQUEST-903.*) are skipped: they only remove targets."""
    found: list[tuple[int, str]] = []
    for path in sorted(crs_rules.glob("REQUEST-9*.conf")):
        if path.name.startswith("REQUEST-903"):
            continue
        text = re.sub(r"\\\n\s*", " ", path.read_text(errors="replace"))
        for targets, rule_id in _RULE.findall(text):
            read = set(targets.split("|"))
            found += [(int(rule_id), c) for c in _COOKIE_TARGETS if c in read]
    return tuple(found)


def service_cookie_rules(cookie: str, crs_rules: Path) -> str:
    """The ModSecurity rules of a protected service host (a file the server block loads) for
    WakeDock's service host cookie named `cookie`."""
    if not _COOKIE_NAME.fullmatch(cookie):
        raise ValueError(f"cookie name {cookie!r} cannot be written into a ModSecurity rule")
    lines = [
        "# Rendered by `wakedock edge render`: WakeDock's service host cookie on protected",
        '# service hosts (docs/edge.md, "The service host cookie").',
        f'SecRule REQUEST_COOKIES:{cookie} "!@rx ^(?:{COOKIE_SHAPE})?$" \\',
        f'    "id:{RULE_ID},phase:1,deny,status:403,log,auditlog,t:none,\\',
        "    msg:'WakeDock service host cookie is not a WakeDock token',\\",
        "    tag:'wakedock',tag:'attack-protocol'\"",
    ]
    # Its name too: a constant, but each rule would still transform and match it.
    lines += [
        f'SecRuleUpdateTargetById {rule_id} "!{collection}:{cookie}"'
        for rule_id, collection in crs_cookie_rules(crs_rules)
    ]
    return "\n".join(lines) + "\n"
