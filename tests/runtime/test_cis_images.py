"""CIS section 4 on Dockerfiles and on the engine's image shapes (config, legacy and BuildKit
history lines): each check passes a good build and fails the specific mistake, saying where,
and a secret's value is never repeated (the real engine: tests/runtime/test_cis_on_engine.py)."""

from __future__ import annotations

import pytest

from wakedock.runtime.cis_images import (
    Finding,
    ImageFacts,
    Verdict,
    check_image,
    history_steps,
    secret_name,
    token_kinds,
)
from wakedock.runtime.dockerfile import parse_dockerfile

# Not a real credential: shaped like one so the pattern check has something to find.
FAKE_TOKEN_VALUE = "not-a-real-token-0123456789"
FAKE_GITHUB = "gh" + "p_" + "A1b2" * 9

GOOD = """\
# syntax=docker/dockerfile:1
FROM base AS build
RUN apt-get update \\
    && apt-get install -y --no-install-recommends build-essential
ADD https://example.invalid/x.tar.gz /tmp/
FROM base
ARG BUILD_TOKEN
ENV POSTGRES_PASSWORD_FILE=/run/secrets/db GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D
LABEL org.opencontainers.image.authors="ops"
COPY --from=build /out /app
USER 10001:10001
HEALTHCHECK --interval=30s CMD ["wakedock", "health"]
"""


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    return {f.id: f for f in findings}


def test_a_good_final_stage_passes_but_an_add_in_any_stage_fails() -> None:
    found = by_id(check_image(None, parse_dockerfile(GOOD)))
    assert {k: f.verdict for k, f in found.items()} == {
        "4.1": Verdict.PASS,
        "4.6": Verdict.PASS,
        "4.7": Verdict.PASS,
        "4.9": Verdict.FAIL,
        "4.10": Verdict.PASS,
    }
    assert "line 5: ADD of a URL" in found["4.9"].reason


def test_each_mistake_of_a_bad_dockerfile_fails_its_check_with_the_line() -> None:
    bad = (
        "FROM base\n"
        "ADD app.tar /app\n"
        "RUN apt-get update\n"
        "RUN apk update && apk add curl\n"
        f"ENV API_TOKEN={FAKE_TOKEN_VALUE}\n"
        "USER root\n"
        "HEALTHCHECK NONE\n"
    )
    found = by_id(check_image(None, parse_dockerfile(bad)))
    assert all(f.verdict is Verdict.FAIL for f in found.values())
    assert found["4.1"].reason == "Dockerfile line 6: USER root"
    assert found["4.6"].reason == "Dockerfile line 7: HEALTHCHECK NONE"
    assert found["4.7"].reason == "Dockerfile line 3: RUN apt-get update (no install)"
    assert found["4.9"].reason == "Dockerfile line 2: ADD of a local file (app.tar)"
    assert found["4.10"].reason == "Dockerfile line 5: ENV API_TOKEN has a literal value"
    assert FAKE_TOKEN_VALUE not in str(found)


def test_user_and_healthcheck_are_judged_on_the_final_stage_only() -> None:
    text = "FROM a AS build\nUSER 10001\nHEALTHCHECK CMD true\nFROM b\nRUN true\n"
    found = by_id(check_image(None, parse_dockerfile(text)))
    assert found["4.1"].reason == "Dockerfile: the final stage sets no USER"
    assert found["4.6"].reason == "Dockerfile: the final stage has no HEALTHCHECK"
    uid_zero = by_id(check_image(None, parse_dockerfile("FROM b\nUSER 0:0\n")))
    assert uid_zero["4.1"].verdict is Verdict.FAIL


def test_update_alone_in_exec_form_and_with_flags_fails() -> None:
    text = 'FROM b\nRUN ["apt-get", "-q", "update"]\nRUN yum -y update\nRUN apk add --update x\n'
    found = by_id(check_image(None, parse_dockerfile(text)))
    assert found["4.7"].reason == (
        "Dockerfile line 2: RUN apt-get -q update (no install); "
        "Dockerfile line 3: RUN yum -y update (no install)"
    )


@pytest.mark.security
def test_a_hostile_dockerfile_cannot_leak_or_inject_through_a_reason() -> None:
    text = (
        "FROM b\n"
        f"RUN apt-get update; curl -H 'Authorization: {FAKE_TOKEN_VALUE}' x\n"
        "ADD https://user:hunter-two@example.invalid/x /x\n"
        "ADD \x1b]2;owned\x07 /y\n"
    )
    found = by_id(check_image(None, parse_dockerfile(text)))
    everything = str(found)
    assert FAKE_TOKEN_VALUE not in everything and "hunter-two" not in everything
    assert "\x1b" not in everything and "\x07" not in everything
    assert "https://***@example.invalid/x" in found["4.9"].reason


def test_secret_names_need_a_literal_value() -> None:
    assert secret_name("DB_PASSWORD", "hunter-two")
    assert secret_name("aws_secret_access_key", "x")
    assert secret_name("com.example.api-key", "x")
    assert not secret_name("DB_PASSWORD", "")
    assert not secret_name("DB_PASSWORD", "${DB_PASSWORD}")
    assert not secret_name("DB_PASSWORD_FILE", "/run/secrets/db")
    assert not secret_name("GPG_KEY", "A035C8C19219BA821ECEA86B64E628F8D684696D")
    assert not secret_name("WAKEDOCK_AUTH__ACCESS_TOKEN_TTL", "900")
    assert not secret_name("org.opencontainers.image.authors", "ops")
    assert not secret_name("WAKEDOCK_SECRETS__PROVIDER", "file")
    assert secret_name("WAKEDOCK_DATABASE__PASSWORD", "x")


def test_well_known_token_shapes_and_private_keys_are_found_by_kind() -> None:
    assert token_kinds(f"curl -H 'Authorization: token {FAKE_GITHUB}'") == ["a GitHub token"]
    assert token_kinds("-----BEGIN OPENSSH " + "PRIVATE KEY-----") == ["a private key block"]
    assert token_kinds("AKIA" + "Z" * 16) == ["an AWS access key id"]
    assert token_kinds("apt-get install -y curl") == []
    assert token_kinds("DATABASE_URL=postgresql://app:" + "pw" + "@db/app") == [
        "a password in a URL"
    ]
    assert token_kinds("postgresql://app:${DB_PASSWORD}@db/app") == []


LEGACY = (
    "/bin/sh -c #(nop) ADD file:9e1f in / ",
    "/bin/sh -c #(nop)  ENV DB_PASSWORD=" + FAKE_TOKEN_VALUE,
    "|1 BUILD_TOKEN=" + FAKE_TOKEN_VALUE + " /bin/sh -c apt-get update",
    "/bin/sh -c #(nop) ADD file:abcd in /usr/local/bin/tool ",
    "/bin/sh -c #(nop)  USER root",
)
BUILDKIT = (
    "",
    "COPY /out /app # buildkit",
    "RUN /bin/sh -c apt-get update && apt-get install -y x # buildkit",
    "ENV APP_MODE=production",
    "USER 10001",
)


def test_history_lines_of_both_builders_read_back_as_instructions() -> None:
    steps = history_steps(LEGACY)
    assert [(s.position, s.keyword) for s in steps] == [
        (0, "ADD"),
        (1, "ENV"),
        (2, "RUN"),
        (3, "ADD"),
        (4, "USER"),
    ]
    assert steps[2].arguments == "apt-get update"
    assert steps[2].build_args == (("BUILD_TOKEN", FAKE_TOKEN_VALUE),)
    assert [s.keyword for s in history_steps(BUILDKIT)] == ["COPY", "RUN", "ENV", "USER"]


def test_an_image_is_judged_on_its_config_and_history() -> None:
    bad = ImageFacts(
        "bad",
        {"User": "", "Env": [f"DB_PASSWORD={FAKE_TOKEN_VALUE}", "PATH=/bin"], "Healthcheck": None},
        LEGACY,
    )
    found = by_id(check_image(bad, None))
    assert all(f.verdict is Verdict.FAIL for f in found.values())
    assert found["4.1"].reason == "image: no USER, the container runs as root"
    assert found["4.6"].reason == "image: no HEALTHCHECK"
    assert found["4.7"].reason == "image history #2: RUN apt-get update (no install)"
    # The base's root filesystem (first layer, to /) is not the image's own ADD.
    assert found["4.9"].reason == "image history #3: ADD file:abcd in /usr/local/bin/tool"
    assert "ENV DB_PASSWORD" in found["4.10"].reason
    assert "build argument BUILD_TOKEN" in found["4.10"].reason
    assert FAKE_TOKEN_VALUE not in str(found)

    good = ImageFacts(
        "good",
        {"User": "10001", "Env": ["APP_MODE=production"], "Healthcheck": {"Test": ["CMD", "x"]}},
        BUILDKIT,
    )
    assert all(f.verdict is Verdict.PASS for f in check_image(good, None))
    disabled = ImageFacts("off", {"User": "app", "Healthcheck": {"Test": ["NONE"]}}, ())
    assert by_id(check_image(disabled, None))["4.6"].reason == "image: HEALTHCHECK NONE"
