"""Signing in over HTTP, as a client would: one helper for every test (and bench/)."""

from __future__ import annotations

from typing import Any

import httpx

LOGIN = "/api/v1/auth/login"


def login(client: httpx.Client, username: str, password: str, **extra: Any) -> httpx.Response:
    """POST the credentials as JSON to the login route; the answer, whatever it is."""
    return client.post(LOGIN, json={"username": username, "password": password, **extra})


def access_token(client: httpx.Client, username: str, password: str) -> str:
    """The access token of a login that must succeed (no MFA step)."""
    response = login(client, username, password)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
