"""The Dockerfile reader behind `cis-check --dockerfile`: continuations, comments, directives,
the exec form, heredocs and multi-stage builds."""

from __future__ import annotations

import pytest

from wakedock.runtime.dockerfile import DockerfileError, parse_dockerfile


def test_continuations_join_into_one_instruction_at_its_first_line() -> None:
    parsed = parse_dockerfile(
        "FROM base\n"
        "RUN apt-get update \\\n"
        "    # a comment inside the continuation is skipped\n"
        "\n"
        "    && apt-get install -y curl\n"
        "USER 10001\n"
    )
    run, user = parsed.stages[0].instructions
    assert (run.line, run.keyword) == (2, "RUN")
    assert run.arguments == "apt-get update && apt-get install -y curl"
    assert (user.line, user.arguments) == (6, "10001")


def test_comments_and_blank_lines_are_not_instructions() -> None:
    parsed = parse_dockerfile("# header\n\nFROM base\n  # indented comment\nuser app\n")
    assert [(i.keyword, i.line) for i in parsed.instructions()] == [("USER", 5)]


def test_escape_directive_changes_the_continuation_character() -> None:
    parsed = parse_dockerfile("# escape=`\nFROM base\nRUN echo a `\n  b\nCOPY C:\\x /y\n")
    run, copy = parsed.stages[0].instructions
    assert run.arguments == "echo a b"
    assert copy.arguments == "C:\\x /y"


def test_exec_form_is_read_as_json_and_shell_form_is_not() -> None:
    parsed = parse_dockerfile(
        'FROM base\nHEALTHCHECK CMD ["wakedock", "health"]\nCMD ["broken"\nRUN echo [x]\n'
    )
    health, cmd, run = parsed.stages[0].instructions
    assert health.exec_form is None  # "CMD [...]" is not itself a JSON array
    assert cmd.exec_form is None  # invalid JSON: the shell form, as Docker reads it
    assert run.words() == ["echo", "[x]"]
    entry = parse_dockerfile('FROM b\nENTRYPOINT ["/bin/app", "--flag"]\n').stages[0]
    assert entry.instructions[0].exec_form == ("/bin/app", "--flag")


def test_multi_stage_builds_keep_each_stage_and_the_final_one() -> None:
    parsed = parse_dockerfile(
        "ARG BASE=debian\n"
        "FROM --platform=linux/amd64 $BASE AS build\n"
        "USER root\n"
        "RUN make\n"
        "FROM $BASE\n"
        "COPY --from=build /out /app\n"
        "USER 10001\n"
    )
    assert [i.keyword for i in parsed.preamble] == ["ARG"]
    build, final = parsed.stages
    assert (build.name, build.base, build.line) == ("build", "$BASE", 2)
    assert [i.keyword for i in build.instructions] == ["USER", "RUN"]
    assert parsed.final is final and final.name is None
    assert [i.arguments for i in final.instructions] == ["--from=build /out /app", "10001"]


def test_a_heredoc_body_is_not_read_as_instructions() -> None:
    parsed = parse_dockerfile("FROM base\nRUN <<EOF\nADD evil /\nUSER root\nEOF\nUSER 10001\n")
    assert [i.keyword for i in parsed.instructions()] == ["RUN", "USER"]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "RUN echo\n", "FROM base\n!!\n"])
def test_not_a_dockerfile_is_refused(text: str) -> None:
    with pytest.raises(DockerfileError):
        parse_dockerfile(text)
