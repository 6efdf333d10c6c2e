"""Fields whose value is the user's own words, at the edge (edge/exclusions.py): a password
and a secret's value may hold quotes, `--`, markup or a URL; through a real nginx + ModSecurity +
CRS (test_direct_routes.py's edge, with its stand-in WakeDock), each passes in its own field on
its own path of an admin host, and the same words anywhere else are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest

from edge.test_direct_routes import Edge, Recorder, edge, service, wakedock  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.security]

# What the CRS reads as SQL injection, a comment, script and a remote file all at once.
WORDS = "pa'ss' OR '1'='1' -- <b>x</b> https://user:pw@db.example.com/x"
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"}
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True)
class Post:
    """One form or JSON post: the free-text field, and a neighbour that gets no exemption."""

    method: str
    path: str
    field: str
    neighbour: str
    json: bool = False
    # A field named by the user's keys (`values.<key>`) is exempt on the whole admin host:
    # ModSecurity 3.0.9 takes no pattern in a per-request exclusion (docs/edge.md).
    any_path: bool = False

    def send(
        self, to: Edge, fields: dict[str, str], path: str = "", host: str = "localhost"
    ) -> int:
        if self.json:
            body: dict[str, object] = {}
            for name, value in fields.items():
                # `values.db` is the key `db` of the JSON object `values`.
                outer, _, inner = name.partition(".")
                if inner:
                    body.setdefault(outer, {})[inner] = value  # type: ignore[index]
                else:
                    body[name] = value
            data, headers = json.dumps(body).encode(), JSON
        else:
            data, headers = urlencode(fields).encode(), FORM
        status, _, _ = to.request(host, self.method, path or self.path, headers, data)
        return status


POSTS = [
    Post("POST", "/login", "password", "username"),
    Post("POST", "/account/password", "new_password", "csrf_tokens"),
    Post("POST", "/admin/users", "password", "username"),
    Post("POST", "/api/v1/users", "password", "username", json=True),
    Post("PUT", "/api/v1/secrets/app/db", "values.db_password", "note", json=True, any_path=True),
    Post("POST", "/admin/secrets/write", "value.db_password", "new_key", any_path=True),
    Post("POST", "/admin/secrets/write", "new_value", "new_key"),
]


@pytest.mark.parametrize("post", POSTS, ids=lambda p: f"{p.path} {p.field}")
def test_the_users_own_words_pass_in_their_field_and_nowhere_else(
    edge: Edge,  # noqa: F811 - the fixture
    wakedock: Recorder,  # noqa: F811 - the fixture
    post: Post,
) -> None:
    assert post.send(edge, {post.field: WORDS, post.neighbour: "plain"}) == 200
    assert len(wakedock.requests) == 1
    # The same words in the neighbouring field, on another path, or to a service's host.
    assert post.send(edge, {post.field: "plain", post.neighbour: WORDS}) == 403
    assert post.send(edge, {post.field: WORDS}, host="app.localhost") == 403
    elsewhere = post.send(edge, {post.field: WORDS}, path="/services/new")
    assert elsewhere == (200 if post.any_path else 403)
    assert len(wakedock.requests) == (2 if post.any_path else 1)
