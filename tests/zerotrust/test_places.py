"""Address -> Place: the bundled country database, and MaxMind-format City and ASN databases
when configured (built here with mmdb-writer, as MaxMind's own test databases are)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from mmdb_writer import MmdbF64, MmdbU16, MmdbU32, MMDBWriter
from netaddr import IPSet

from wakedock.zerotrust.base import Place
from wakedock.zerotrust.places import PlaceFinder


@pytest.fixture(scope="module")
def bundled() -> PlaceFinder:
    finder = PlaceFinder()
    finder.warm()  # once for the module: ~0.6 s
    return finder


@pytest.mark.parametrize(
    ("address", "country"),
    [
        ("8.8.8.8", "US"),  # Google Public DNS
        ("193.0.6.139", "NL"),  # RIPE NCC, Amsterdam
        ("202.12.27.33", "JP"),  # the M root server (WIDE Project)
        ("2001:4860:4860::8888", "US"),  # Google Public DNS over IPv6
        ("::ffff:8.8.8.8", "US"),  # IPv4-mapped
    ],
)
def test_the_bundled_database_knows_well_known_addresses(
    bundled: PlaceFinder, address: str, country: str
) -> None:
    assert bundled.find(address) == Place(country=country)


@pytest.mark.parametrize(
    "address", ["10.0.0.1", "127.0.0.1", "::1", "192.168.1.1", "169.254.0.1", "fe80::1",
                "100.64.0.1", "192.0.2.1", "not-an-ip", ""],
)  # fmt: skip
def test_private_reserved_and_invalid_addresses_have_no_place(
    bundled: PlaceFinder, address: str
) -> None:
    assert bundled.find(address) == Place()


def test_lookups_from_several_threads_and_finders_agree(bundled: PlaceFinder) -> None:
    results: list[Place] = []
    finders = [PlaceFinder() for _ in range(4)]
    threads = [threading.Thread(target=lambda f=f: results.append(f.find("8.8.8.8")))
               for f in finders]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [Place(country="US")] * 4


def _city_database(path: Path) -> Path:
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-City", languages=["en"])
    writer.insert_network(IPSet(["81.2.69.0/24"]), {
        "country": {"iso_code": "GB"},
        "location": {"latitude": MmdbF64(51.5142), "longitude": MmdbF64(-0.0931),
                     "accuracy_radius": MmdbU16(5)},
    })  # fmt: skip
    writer.to_db_file(str(path))
    return path


def _asn_database(path: Path) -> Path:
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-ASN", languages=["en"])
    writer.insert_network(IPSet(["81.2.64.0/18"]), {
        "autonomous_system_number": MmdbU32(20712),
        "autonomous_system_organization": "Andrews & Arnold Ltd",
    })  # fmt: skip
    writer.to_db_file(str(path))
    return path


def test_configured_databases_add_coordinates_and_the_asn(tmp_path: Path) -> None:
    finder = PlaceFinder(
        _city_database(tmp_path / "city.mmdb"), _asn_database(tmp_path / "asn.mmdb")
    )
    assert finder.find("81.2.69.160") == Place(
        country="GB", asn=20712, organisation="Andrews & Arnold Ltd",
        latitude=51.5142, longitude=-0.0931, accuracy_km=5,
    )  # fmt: skip
    # Outside the configured databases, the bundled one still gives the country.
    assert finder.find("8.8.8.8") == Place(country="US")
    assert finder.find("10.0.0.1") == Place()
    # An IPv6 address in IPv4-only databases: not an error, the bundled country.
    assert finder.find("2001:4860:4860::8888") == Place(country="US")


def test_a_database_that_cannot_be_opened_names_the_setting(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a database")
    with pytest.raises(ValueError, match=r"zerotrust\.city_database: cannot open"):
        PlaceFinder(city_database=broken)
    with pytest.raises(ValueError, match=r"zerotrust\.asn_database: cannot open"):
        PlaceFinder(asn_database=tmp_path / "absent.mmdb")
