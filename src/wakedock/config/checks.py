"""Value checks shared by the settings sections. Messages never repeat the value."""

from __future__ import annotations

import ipaddress

from pydantic import SecretStr

SECRET_REF_PREFIX = "secret:"  # noqa: S105 - a prefix, not a secret


def rate_limit(value: str) -> str:
    from limits import parse

    try:
        parse(value)
    except ValueError as exc:
        raise ValueError("not a rate limit like '5/15 minutes'") from exc
    return value


def key_bytes(value: SecretStr | None) -> SecretStr | None:
    """Keys (signing, encryption, chain) are at least 256 bits (a `secret:` reference is
    checked once resolved)."""
    if value is not None and value.get_secret_value().startswith(SECRET_REF_PREFIX):
        return value
    if value is not None and len(value.get_secret_value().encode()) < 32:
        raise ValueError("must be at least 32 bytes")
    return value


def ip_networks(values: list[str]) -> list[str]:
    # Messages name the item, never its value (it may be anything, a secret pasted by mistake).
    for index, cidr in enumerate(values):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise ValueError(f"item {index} is not an IP network such as 10.0.0.0/8") from exc
    return values
