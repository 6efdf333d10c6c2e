"""The password policy: length, blocklist (and its disguises), context, guessability."""

from __future__ import annotations

import pytest

from wakedock.auth.passwords import PasswordHasher
from wakedock.auth.policy import POLICY_MESSAGE, blocklist, describe, password_problems


def problems(password: str, **kw: str) -> list[str]:
    return password_problems(password, min_length=12, min_score=3, **kw)


def test_blocklist_has_tens_of_thousands_of_entries() -> None:
    assert len(blocklist()) >= 20_000
    assert "dragon" in blocklist()


@pytest.mark.parametrize(
    "password", ["Password123!", "P@ssw0rd2024!!", "QWERTYUIOP123", "iloveyou!!!!", "Dr@g0n1234567"]
)
def test_disguised_common_passwords_are_refused(password: str) -> None:
    assert "is a commonly used password" in problems(password)


def test_context_words_are_refused() -> None:
    assert any("username" in p for p in problems("marguerite-rocks-42", username="marguerite"))
    assert any("email" in p for p in problems("acmecorp-zz-99-zz", email="bob@acmecorp.io"))
    assert any("product" in p for p in problems("my-WakeDock-server-9"))


def test_length_bounds_and_no_composition_rules() -> None:
    assert problems("correct horse battery staple") == []  # no digits, no symbols: fine
    assert any("at least 12" in p for p in problems("Xy7#kq2!Lm"))
    assert any("at most 256" in p for p in problems("a" * 257))
    assert password_problems("Xy7#kq2!Lm", min_length=8, min_score=3) == []


def test_repetitive_or_keyboard_patterns_are_too_guessable() -> None:
    assert any("guess" in p for p in problems("aaaaaaaaaaaaaaaa"))
    assert any("guess" in p for p in problems("qwertyuiopasdf"))


def test_describe_carries_the_stable_phrase() -> None:
    text = describe(["must be at least 12 characters long"])
    assert text.startswith(POLICY_MESSAGE)


def test_argon2id_verifies_exactly_and_never_below_owasp() -> None:
    hasher = PasswordHasher(19456, 2, 1)
    stored = hasher.hash("a" * 200 + "B")
    assert stored.startswith("$argon2id$")
    assert hasher.verify(stored, "a" * 200 + "B")
    # No truncation: a change at character 201 is noticed (bcrypt would stop at byte 72).
    assert not hasher.verify(stored, "a" * 200 + "C")
    assert not hasher.verify(stored, " " + "a" * 200 + "B")
    assert not hasher.verify(None, "anything")
    with pytest.raises(ValueError, match="OWASP"):
        PasswordHasher(8192, 1, 1)


def test_rehash_is_requested_when_parameters_change() -> None:
    old = PasswordHasher(19456, 2, 1).hash("some long passphrase here")
    assert PasswordHasher(65536, 3, 4).needs_rehash(old)
    assert not PasswordHasher(19456, 2, 1).needs_rehash(old)
