"""Address -> `Place`: where an address is, as far as the databases know.

The country comes from the database `geoip2fast` bundles (GeoLite2 data, IPv4 and IPv6): it
works with no setup. A MaxMind-format database configured by the admin (GeoLite2/GeoIP2 City or
Country, and ASN) is preferred for the country and adds coordinates, their accuracy radius, the
ASN and its organisation. Private, loopback, link-local and reserved addresses have no place.

The bundled database costs ~0.6 s and ~60 MiB per process to load: it is loaded once, at the
first public address (or by `warm()` on a worker thread at start), never at import.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import geoip2.database
import geoip2.errors
import maxminddb

from wakedock.zerotrust.base import Place
from wakedock.zerotrust.ranges import parse_address

# Country and IPv6 in one file (the IPv4-only one saves ~20 MiB but leaves IPv6 clients
# without a country). Only this file from the installed package is ever read: geoip2fast's
# data files are pickles, so no path from the configuration may reach it.
_BUNDLED_FILE = "geoip2fast-ipv6.dat.gz"


class _BundledCountries:
    """geoip2fast keeps its tables in module globals: one instance per process, whoever asks
    for it, loaded under a lock so two first requests do not load it twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._database: Any = None

    def _loaded(self) -> Any:
        if self._database is None:
            with self._lock:
                if self._database is None:
                    from geoip2fast import GeoIP2Fast  # type: ignore[import-untyped]

                    self._database = GeoIP2Fast(geoip2fast_data_file=_BUNDLED_FILE)
        return self._database

    def country(self, address: str) -> str | None:
        code = self._loaded().lookup(address).country_code
        # Error codes ("--" private or not found, "" invalid) are not countries.
        return code if isinstance(code, str) and len(code) == 2 and code.isalpha() else None


_BUNDLED = _BundledCountries()


def _open(setting: str, path: Path) -> geoip2.database.Reader:
    try:
        return geoip2.database.Reader(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise ValueError(f"zerotrust.{setting}: cannot open {path}: {exc}") from None


class PlaceFinder:
    """`find(address)`: thread-safe, cached (bounded LRU: the same few thousand addresses
    come back all day)."""

    def __init__(
        self,
        city_database: Path | None = None,
        asn_database: Path | None = None,
        *,
        bundled: bool = True,
        cache_size: int = 4096,
    ) -> None:
        # Opened now, so a wrong path is an error at start, not at the first sign-in.
        self._city = _open("city_database", city_database) if city_database else None
        self._city_type = self._city.metadata().database_type if self._city else ""
        self._asn = _open("asn_database", asn_database) if asn_database else None
        self._bundled = bundled
        self.find = lru_cache(maxsize=cache_size)(self._find)

    def warm(self) -> None:
        """Load the bundled database now (it takes ~0.6 s): call it on a worker thread at
        start so the first sign-in does not wait."""
        if self._bundled:
            _BUNDLED.country("8.8.8.8")

    def _find(self, address: str) -> Place:
        parsed = parse_address(address)
        if parsed is None or not parsed.is_global:
            return Place()
        ip = str(parsed)
        place: dict[str, Any] = {}
        if self._city is not None:
            place.update(_from_city(self._city, self._city_type, ip))
        if self._asn is not None:
            place.update(_from_asn(self._asn, ip))
        if place.get("country") is None and self._bundled:
            place["country"] = _BUNDLED.country(ip)
        return Place(**place)


def _from_city(reader: geoip2.database.Reader, database_type: str, ip: str) -> dict[str, Any]:
    try:
        if "City" in database_type:
            city = reader.city(ip)
            location = city.location
            return {
                "country": city.country.iso_code,
                "latitude": location.latitude,
                "longitude": location.longitude,
                "accuracy_km": location.accuracy_radius,
            }
        return {"country": reader.country(ip).country.iso_code}
    except (geoip2.errors.AddressNotFoundError, ValueError):
        return {}


def _from_asn(reader: geoip2.database.Reader, ip: str) -> dict[str, Any]:
    try:
        record = reader.asn(ip)
    except (geoip2.errors.AddressNotFoundError, ValueError):
        return {}
    return {
        "asn": record.autonomous_system_number,
        "organisation": record.autonomous_system_organization,
    }
