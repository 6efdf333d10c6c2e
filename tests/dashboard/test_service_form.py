"""The create / edit pages in process: every problem at once beside its control, what was typed
kept and escaped, the YAML text area, and the API's own rules (permission, ownership, CSRF,
policy, image present, audit events) through the same services layer."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.pages import SAME_ORIGIN, events, hidden
from wakedock.rbac.permissions import Role

from .conftest import SignIn

HOSTILE = '"><script>alert(1)</script>'
IMAGE = "wakedock-test/busybox:1"


def form(token: str, **fields: str) -> dict[str, str]:
    """The fields form as its page posts it: the defaults, overridden by `fields`."""
    base = {
        "csrf_token": token,
        "mode": "fields",
        "name": "notes",
        "image": IMAGE,
        "readiness_type": "http",
        "readiness_port": "8080",
        "readiness_path": "/",
        "access_policy": "authenticated",
        "stop_method": "stop",
        "read_only_root": "on",
        "tmpfs": "/tmp",
    }
    return {**base, **fields}


def problems_of(page: str, control: str) -> list[str]:
    """The problems listed under one control (empty when none)."""
    found = re.search(rf'<ul class="field-error" id="f-{control}-error">(.*?)</ul>', page, re.S)
    if found is None:
        return []
    return [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", found.group(1), re.S)]


def top_problems(page: str) -> list[str]:
    found = re.search(r'<div class="alert" role="alert" id="problems">(.*?)</div>', page, re.S)
    assert found is not None, "no summary of the problems"
    return [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", found.group(1), re.S)]


def new_page(browser: TestClient) -> str:
    page = browser.get("/services/new")
    assert page.status_code == 200, page.text
    return page.text


def test_links_follow_the_role(h: Harness, signed_in: SignIn) -> None:
    viewer, _ = signed_in(Role.VIEWER)
    listed = viewer.get("/services").text
    assert "/services/new" not in listed and "/edit" not in listed
    refused = viewer.get("/services/new")
    assert refused.status_code == 403 and "may not create" in refused.text
    assert viewer.get("/services/app/edit").status_code == 403
    developer, _ = signed_in(Role.DEVELOPER)
    listed = developer.get("/services").text
    # A developer may create, but edits only its own (app and blog have no owner).
    assert 'href="/services/new"' in listed and "/edit" not in listed
    operator, _ = signed_in(Role.OPERATOR)
    listed = operator.get("/services").text
    assert 'href="/services/app/edit"' in listed and 'href="/services/blog/edit"' in listed


def test_every_problem_is_shown_at_once_beside_its_field(h: Harness, signed_in: SignIn) -> None:
    browser, token = signed_in(Role.DEVELOPER)
    data = form(
        token,
        name="Not_A_Label",
        image="nginx:1.27",  # not on the engine
        limits_memory_mb="lots",
        privileged="on",
        cap_add="NET_BIND_SERVICE\n\nSYS_ADMIN",
        volumes="/etc:/data:ro",
        ports="80:8080",
        env="GOOD=1\nNO_EQUALS_SIGN",
        readiness_port="",
    )
    answer = browser.post("/services/new", data=data, headers=SAME_ORIGIN)
    assert answer.status_code == 422
    page = answer.text
    assert problems_of(page, "name") == [
        "must be a DNS label: lowercase letters, digits and '-', 1-63 characters"
    ]
    memory = problems_of(page, "limits_memory_mb")
    assert memory == ["Input should be a valid integer, unable to parse string as an integer"]
    assert problems_of(page, "readiness_port") == ["Field required"]
    assert problems_of(page, "env") == ["line 2: write NAME=value"]
    # The launch policy's violations of the fields that did validate, in the same answer.
    assert problems_of(page, "privileged") == ["privileged containers are refused"]
    assert problems_of(page, "cap_add") == ["line 3: this capability is not allowed"]
    volume = problems_of(page, "volumes")
    assert "line 1: the source is a sensitive host path" in volume
    assert "line 1: the source is outside the allowlist" in volume
    assert problems_of(page, "ports") == [
        "line 1: host ports below 1024 are refused (docker.allow_privileged_host_ports)"
    ]
    # And the engine's: the image is not there (WakeDock never pulls).
    assert problems_of(page, "image") == [
        "the image is not present on the Docker host (WakeDock never pulls it)"
    ]
    assert 'id="f-privileged" name="privileged" type="checkbox" checked aria-invalid="true"' in page
    assert "10 problems to fix, each shown beside its field" in page
    # What was typed is kept.
    assert 'value="Not_A_Label"' in page and "NO_EQUALS_SIGN</textarea>" in page
    # Nothing was created; a spec that did not validate is not a policy refusal (as the API).
    assert browser.get("/services").text.count("data-service=") == 2
    assert events(h, "service_create") == [] or all(
        e.target != "Not_A_Label" for e in events(h, "service_create")
    )


@pytest.mark.security
def test_what_was_typed_comes_back_escaped(signed_in: SignIn) -> None:
    browser, token = signed_in(Role.DEVELOPER)
    data = form(token, name=HOSTILE, display_name=HOSTILE, command=HOSTILE, env=f"A={HOSTILE}",
                image=HOSTILE, readiness_path=HOSTILE)  # fmt: skip
    page = browser.post("/services/new", data=data, headers=SAME_ORIGIN).text
    assert "<script>alert(1)" not in page
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;</textarea>" in page
    assert problems_of(page, "image") and problems_of(page, "readiness_path")
    yaml_page = browser.post(
        "/services/new",
        data={
            "csrf_token": token,
            "mode": "yaml",
            "yaml": f"name: x\nimage: '{HOSTILE}'\n{HOSTILE}: 1",
        },
        headers=SAME_ORIGIN,
    ).text
    assert "<script>alert(1)" not in yaml_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in yaml_page


def test_a_policy_violation_then_fixed_creates_the_service_as_the_api(
    h: Harness, signed_in: SignIn
) -> None:
    browser, token = signed_in(Role.DEVELOPER)
    refused = browser.post(
        "/services/new", data=form(token, cap_add="SYS_ADMIN"), headers=SAME_ORIGIN
    )
    assert refused.status_code == 422
    assert problems_of(refused.text, "cap_add") == ["line 1: this capability is not allowed"]
    # Refused by the services layer itself: audited as the API's refusal is.
    assert [e.target for e in events(h, "policy_violation")] == ["notes"]
    saved = browser.post(
        "/services/new",
        data=form(
            token,
            display_name="Team notes",
            ports="8080",
            env="MODE=prod\nURL=https://x.test/?a=1&b=2",
        ),
        headers=SAME_ORIGIN,
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/services?saved=notes"
    listed = browser.get(saved.headers["location"]).text
    assert "Service notes saved." in listed and 'data-service="notes"' in listed
    view = h.components.services.get("notes")
    assert view.spec.env == {"MODE": "prod", "URL": "https://x.test/?a=1&b=2"}
    assert view.spec.ports[0].container_port == 8080 and view.owner_id is not None
    created = events(h, "service_create")
    assert [e.target for e in created][-1] == "notes"
    assert created[-1].actor.startswith("developer-")


@pytest.mark.security
def test_a_post_without_the_csrf_token_is_refused(h: Harness, signed_in: SignIn) -> None:
    browser, token = signed_in(Role.DEVELOPER)
    data = form(token)
    del data["csrf_token"]
    answer = browser.post("/services/new", data=data, headers=SAME_ORIGIN)
    assert answer.status_code == 403 and "not sent from a WakeDock page" in answer.text
    other_site = {"Origin": "https://evil.test", "Sec-Fetch-Site": "cross-site"}
    assert browser.post("/services/new", data=form(token), headers=other_site).status_code == 403
    assert len(events(h, "csrf_failure")) == 2
    assert "notes" not in {v.name for v in h.components.services.list()}


@pytest.mark.security
def test_a_viewers_forged_post_is_refused(h: Harness, signed_in: SignIn) -> None:
    browser, token = signed_in(Role.VIEWER)
    answer = browser.post("/services/new", data=form(token), headers=SAME_ORIGIN)
    assert answer.status_code == 403
    edit = browser.post("/services/app/edit", data=form(token, name="app"), headers=SAME_ORIGIN)
    assert edit.status_code == 403
    assert "notes" not in {v.name for v in h.components.services.list()}
    assert len(events(h, "forbidden_access")) == 2


def test_an_image_missing_on_the_engine_is_shown_beside_the_image(
    h: Harness, runtime: FakeRuntime, signed_in: SignIn
) -> None:
    browser, token = signed_in(Role.DEVELOPER)
    answer = browser.post(
        "/services/new", data=form(token, image="nginx:1.27"), headers=SAME_ORIGIN
    )
    assert answer.status_code == 422
    assert problems_of(answer.text, "image") == [
        "the image is not present on the Docker host (WakeDock never pulls it)"
    ]
    assert all(c.image != "nginx:1.27" for c in runtime.containers.values())


def test_a_problem_of_no_field_is_shown_at_the_top(runtime: FakeRuntime, signed_in: SignIn) -> None:
    browser, token = signed_in(Role.DEVELOPER)
    runtime.down = True
    answer = browser.post("/services/new", data=form(token), headers=SAME_ORIGIN)
    assert answer.status_code == 503
    assert top_problems(answer.text) == ["the Docker daemon cannot be reached"]
    taken = browser.post("/services/new", data=form(token, name="app"), headers=SAME_ORIGIN)
    assert problems_of(taken.text, "name") == ["a service with this name already exists"]


def test_the_yaml_text_area(h: Harness, signed_in: SignIn) -> None:
    browser, token = signed_in(Role.DEVELOPER)

    def post(text: str) -> str:
        data = {"csrf_token": token, "mode": "yaml", "yaml": text}
        answer = browser.post("/services/new", data=data, headers=SAME_ORIGIN)
        assert answer.status_code in (303, 422), answer.text
        return answer.text if answer.status_code == 422 else answer.headers["location"]

    bad = post("name: notes\nimage: [unclosed\n")
    assert problems_of(bad, "yaml")[0].startswith("not valid YAML at line 3")
    assert "image: [unclosed\n</textarea>" in bad and 'id="yaml-editor" open' in bad
    assert problems_of(post("- a list"), "yaml") == [
        "must be a mapping of the spec's fields (name: ..., image: ...)"
    ]
    laughs = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    assert "aliases (*name) are not accepted here" in problems_of(post(laughs), "yaml")[0]
    big = post("name: notes\n# " + "x" * (33 * 1024))
    assert problems_of(big, "yaml") == ["larger than 32 KiB"]
    both = post(
        f"name: notes\nimage: {IMAGE}\nreadiness: {{type: tcp, port: 99999}}\n"
        "privileged: true\nvolumes: [{source: /var/run/docker.sock, target: /s}]\n"
    )
    listed = problems_of(both, "yaml")
    assert "readiness.port: Input should be less than or equal to 65535" in listed
    assert "privileged: privileged containers are refused" in listed
    assert "volumes[0].source: mounting the Docker socket gives root on the host" in listed
    assert post(f"name: notes\nimage: {IMAGE}\nreadiness: {{type: tcp, port: 80}}\n") == (
        "/services?saved=notes"
    )
    assert h.components.services.get("notes").spec.readiness.type == "tcp"


@pytest.mark.security
def test_a_body_over_the_limit_is_refused_while_read(signed_in: SignIn) -> None:
    browser, token = signed_in(Role.DEVELOPER)
    data = {"csrf_token": token, "mode": "yaml", "yaml": "#" * (80 * 1024)}
    answer = browser.post("/services/new", data=data, headers=SAME_ORIGIN)
    assert answer.status_code == 413


def test_edit_shows_the_spec_and_saves_as_the_apis_update(h: Harness, signed_in: SignIn) -> None:
    browser, token = signed_in(Role.OPERATOR)
    page = browser.get("/services/app/edit")
    assert page.status_code == 200
    text = page.text
    assert 'value="Team wiki"' in text and 'id="f-name" name="name" type="text" value="app"' in text
    assert "8080</textarea>" in text and "name: app" in text  # ports, and the YAML
    values = form(hidden(text, "csrf_token"), name="app", display_name="Wiki", idle_timeout_s="60",
                  ports="8080", access_policy="public")  # fmt: skip
    saved = browser.post("/services/app/edit", data=values, headers=SAME_ORIGIN)
    assert saved.status_code == 303, saved.text
    spec = h.components.services.get("app").spec
    assert spec.display_name == "Wiki" and spec.idle_timeout_s == 60
    assert [e.target for e in events(h, "service_update")] == ["app"]
    renamed = browser.post(
        "/services/app/edit", data={**values, "name": "other"}, headers=SAME_ORIGIN
    )
    assert problems_of(renamed.text, "name") == ["a service cannot be renamed"]
    as_yaml = browser.post(
        "/services/app/edit",
        data={
            "csrf_token": token,
            "mode": "yaml",
            "yaml": f"image: {IMAGE}\nreadiness: {{type: tcp, port: 8080}}\n",
        },
        headers=SAME_ORIGIN,
    )
    assert as_yaml.status_code == 303
    assert h.components.services.get("app").spec.idle_timeout_s == 900  # left out: its default


@pytest.mark.security
def test_a_developer_edits_only_its_own(h: Harness, signed_in: SignIn) -> None:
    browser, token = signed_in(Role.DEVELOPER)
    assert browser.get("/services/app/edit").status_code == 403
    forged = browser.post("/services/app/edit", data=form(token, name="app"), headers=SAME_ORIGIN)
    assert forged.status_code == 403 and "only manage services you own" in forged.text
    assert browser.get("/services/nothing/edit").status_code == 404
    created = browser.post("/services/new", data=form(token), headers=SAME_ORIGIN)
    assert created.status_code == 303
    assert 'href="/services/notes/edit"' in browser.get("/services").text
    assert browser.get("/services/notes/edit").status_code == 200


def test_the_loading_page_is_chosen_in_the_form_and_kept_by_an_edit(
    h: Harness, signed_in: SignIn
) -> None:
    browser, _ = signed_in(Role.OPERATOR)
    h.components.files.write("app/loading.html", b"<h1>{{ display_name }} wakes</h1>")
    text = browser.get("/services/app/edit").text
    # A custom theme whose template is not there: refused beside the template's control.
    missing = form(hidden(text, "csrf_token"), name="app", ports="8080",
                   loading_page_theme="custom", loading_page_template="app/nope.html")  # fmt: skip
    refused = browser.post("/services/app/edit", data=missing, headers=SAME_ORIGIN)
    assert refused.status_code == 422
    assert problems_of(refused.text, "loading_page_template") == [
        "loading_page.template: no such file: upload the template with PUT /api/v1/files/..."
    ]
    assert 'value="app/nope.html"' in refused.text  # kept as typed
    # Another service's folder: refused beside the same control by the spec's own check.
    foreign = browser.post(
        "/services/app/edit",
        data={**missing, "loading_page_template": "blog/loading.html"},
        headers=SAME_ORIGIN,
    )
    assert problems_of(foreign.text, "loading_page_template") == [
        "template must be a file of the service's folder ('app/...')"
    ]
    chosen = {**missing, "loading_page_template": "app/loading.html"}
    assert browser.post("/services/app/edit", data=chosen, headers=SAME_ORIGIN).status_code == 303
    assert h.components.services.get("app").spec.loading_page.template == "app/loading.html"
    # The edit page shows the choice; saved again as shown, the theme stays (an edit sends
    # every field: a form without these controls would have reset it to the default).
    text = browser.get("/services/app/edit").text
    assert '<option value="custom" selected>' in text and 'value="app/loading.html"' in text
    again = form(hidden(text, "csrf_token"), name="app", ports="8080", display_name="Wiki",
                 loading_page_theme="custom", loading_page_template="app/loading.html")  # fmt: skip
    assert browser.post("/services/app/edit", data=again, headers=SAME_ORIGIN).status_code == 303
    page = h.components.services.get("app").spec.loading_page
    assert (page.theme, page.template) == ("custom", "app/loading.html")
