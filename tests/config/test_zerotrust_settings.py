"""zerotrust: safe defaults, partial profile overrides, and errors a user understands."""

from __future__ import annotations

from pathlib import Path

import pytest

from wakedock.config import ConfigError, ZeroTrustSettings, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("WAKEDOCK_"):
            monkeypatch.delenv(name)


def zerotrust(**values: object) -> ZeroTrustSettings:
    return load_settings(overrides={"zerotrust": values}).zerotrust


def refused(**values: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides={"zerotrust": values})
    return str(caught.value)


def test_on_by_default_with_no_lists_and_admin_stricter_than_sign_in() -> None:
    settings = load_settings().zerotrust
    assert settings.enabled is True
    assert settings.deny_networks == settings.allow_countries == settings.deny_asns == []
    assert settings.anonymiser_file is None and settings.city_database is None
    admin, sign_in = settings.profiles.admin, settings.profiles.sign_in
    assert (sign_in.step_up_at, sign_in.deny_at) == (50, 100)
    assert admin.step_up_at < sign_in.step_up_at and admin.deny_at < sign_in.deny_at
    assert settings.profiles.reveal_secret.step_up_at <= admin.step_up_at


def test_one_threshold_changes_only_that_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAKEDOCK_ZEROTRUST__PROFILES__ADMIN__STEP_UP_AT", "10")
    profiles = load_settings().zerotrust.profiles
    assert (profiles.admin.step_up_at, profiles.admin.deny_at) == (10, 80)
    assert profiles.admin.on_signal_error == "step_up"
    assert profiles.sign_in.step_up_at == 50


def test_country_codes_are_normalised_and_checked() -> None:
    assert zerotrust(deny_countries=["ru", " kp"]).deny_countries == ["RU", "KP"]
    message = refused(allow_countries=["DE", "XY"])
    assert "zerotrust.allow_countries" in message
    assert "item 1 is not a two-letter country code (ISO 3166-1) such as DE or US" in message
    assert "item 0: the United Kingdom is GB in ISO 3166-1" in refused(deny_countries=["uk"])
    assert "DE on both allow_countries and deny_countries" in refused(
        allow_countries=["DE"], deny_countries=["de"]
    )


def test_a_bad_network_names_the_list_and_the_item() -> None:
    message = refused(deny_networks=["10.0.0.0/8", "10.0.0.0/33"])
    assert "zerotrust.deny_networks: Value error, item 1 is not an IP network" in message
    assert "WAKEDOCK_ZEROTRUST__DENY_NETWORKS" in message


def test_missing_files_are_named(tmp_path: Path) -> None:
    absent = tmp_path / "tor-exits.txt"
    message = refused(anonymiser_file=str(absent))
    assert f"zerotrust.anonymiser_file: Value error, no such file: {absent}" in message
    absent.write_text("185.220.101.1\n")
    assert zerotrust(anonymiser_file=str(absent)).anonymiser_file == absent


def test_thresholds_weights_and_asns_are_checked() -> None:
    message = refused(profiles={"sign_in": {"step_up_at": 120}})
    assert "zerotrust.profiles.sign_in: Value error, step_up_at must not exceed deny_at" in message
    assert "not from 0 (off) to 10" in refused(weights={"network": 11})
    assert "signal name" in refused(weights={"User-Agent": 1})
    assert "is not an AS number" in refused(deny_asns=[0])
    assert "deny_asns needs asn_database" in refused(deny_asns=[14061])
    assert "unknown key" in refused(profiles={"superuser": {"step_up_at": 1}})
    assert "on_signal_error" in refused(profiles={"admin": {"on_signal_error": "panic"}})


def test_behaviour_settings_are_checked_and_named() -> None:
    assert zerotrust(behaviour={"habit_zone": "Europe/Paris"}).behaviour.habit_zone == (
        "Europe/Paris"
    )
    message = refused(behaviour={"habit_zone": "Mars/Olympus"})
    assert "zerotrust.behaviour.habit_zone: Value error, not a time zone name" in message
    assert "greater than 0" in refused(behaviour={"max_speed_kmh": 0})
    assert "greater than or equal to 2" in refused(behaviour={"rapid_change_addresses": 1})
