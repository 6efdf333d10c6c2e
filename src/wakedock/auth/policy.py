"""The password policy (NIST SP 800-63B style): length, blocklist, context, guessability.

No composition rules. The blocklist is zxcvbn's 30,000 most common passwords, checked also after
undoing common disguises (case, leetspeak, a trailing run of digits or symbols).

Control characters (Unicode category Cc: NUL, tab, line breaks, DEL, the C1 range) are refused:
no keyboard types them into a login form, NUL truncates the password in C code that handles it
later (a login helper, a PAM module), and line breaks split it in files and forms. Surrogates
(Cs) are refused too: they are not characters and cannot be encoded, so they could never be
hashed. Format characters (Cf) stay allowed: the zero-width joiner builds emoji sequences and the
zero-width non-joiner is part of ordinary Persian, Urdu or Hindi text; NIST SP 800-63B asks
verifiers to accept every printable Unicode character, and those are typed by real keyboards.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

MAX_LENGTH = 256
PRODUCT_WORDS = ("wakedock",)
POLICY_MESSAGE = "password does not meet security requirements"
_LEET = str.maketrans(
    {
        "@": "a",
        "4": "a",
        "3": "e",
        "1": "i",
        "!": "i",
        "0": "o",
        "$": "s",
        "5": "s",
        "7": "t",
        "+": "t",
    }
)
_TRAILING_NOISE = re.compile(r"[\d\W_]+$")
# zxcvbn cost grows with length; the tail of a long password only makes it stronger.
_ZXCVBN_PREFIX = 100
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs"})


@lru_cache(maxsize=1)
def blocklist() -> frozenset[str]:
    """The common-password blocklist (lower-case)."""
    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


def _disguises(password: str) -> set[str]:
    lowered = password.lower()
    candidates = {lowered, lowered.translate(_LEET)}
    candidates |= {_TRAILING_NOISE.sub("", c) for c in list(candidates)}
    candidates |= {c.translate(_LEET) for c in list(candidates)}
    return {c for c in candidates if c}


def _context_words(username: str | None, email: str | None) -> list[str]:
    words = list(PRODUCT_WORDS)
    if username:
        words.append(username.lower())
    if email:
        local, _, domain = email.lower().partition("@")
        words += [local, domain.split(".")[0]]
    return [w for w in words if len(w) >= 4]


def password_problems(
    password: str,
    *,
    min_length: int,
    min_score: int,
    username: str | None = None,
    email: str | None = None,
) -> list[str]:
    """Every reason `password` is refused; an empty list means it is acceptable."""
    problems: list[str] = []
    if any(unicodedata.category(char) in _REFUSED_CATEGORIES for char in password):
        problems.append("must not contain control characters (NUL, tab, line breaks, ...)")
    if len(password) < min_length:
        problems.append(f"must be at least {min_length} characters long")
    if len(password) > MAX_LENGTH:
        problems.append(f"must be at most {MAX_LENGTH} characters long")
        return problems
    disguises = _disguises(password)
    if disguises & blocklist():
        problems.append("is a commonly used password")
    lowered = password.lower()
    for word in _context_words(username, email):
        if word in lowered or any(word in d for d in disguises):
            problems.append("contains the username, email or product name")
            break
    if not problems and min_score > 0:
        result = zxcvbn(password[:_ZXCVBN_PREFIX], user_inputs=_context_words(username, email))
        if result["score"] < min_score:
            problems.append("is too easy to guess (patterns, repeats, dictionary words)")
    return problems


def describe(problems: list[str]) -> str:
    """The 400 detail: the fixed phrase clients match on, then the reasons."""
    return f"{POLICY_MESSAGE}: " + "; ".join(f"password {p}" for p in problems)
