"""Country of an IP address from a MaxMind-format database (GeoLite2-Country or -City)."""

from __future__ import annotations

from pathlib import Path

import geoip2.database
import geoip2.errors
import maxminddb


class GeoIP:
    def __init__(self, path: Path) -> None:
        try:
            self._reader = geoip2.database.Reader(str(path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ValueError(f"alerts.geoip_database: cannot open {path}: {exc}") from None

    def __call__(self, ip: str) -> str | None:
        """ISO country code, or None for private, reserved or unknown addresses."""
        try:
            code = self._reader.country(ip).country.iso_code
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return None
        return str(code) if code else None
