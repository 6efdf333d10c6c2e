"""`wakedock` with the CRS exclusions that the pass through the edge found missing, proposed for
src/wakedock/edge/render.py and prototyped here only (docs/edge.md, "The test suite through the
edge"). Run as `python -m support.proposed_edge edge run ...` with tests/ on the path. Each one
is applied only while render.py does not have it yet: once it does, this is plain `wakedock`.

Both are on the admin hosts' server block only, like the exclusions render.py already writes:

- 931130 ("Off-Domain Reference", 5 points) on `next` of the sign-in detour: a protected
  service's hand-off sends the browser to `/auth/proxy?next=https://app.<domain>/...` on the
  admin host; when that host is reached with a port (`localhost:8444`), the service's address
  no longer ends with the request's Host and the hand-off is refused. WakeDock checks `next`
  itself (a foreign target is refused, tests/proxy/test_proxy.py).
- 920420 (content type not in the CRS's allowed list), 920340 and 920341 (a body without a
  Content-Type), for `PUT /api/v1/files/...` only: the files API takes a file's bytes as
  `application/octet-stream` (its OpenAPI), which CRS 3.3 does not allow, or with no type
  (`curl -T`, httpx's `content=`). The body is WakeDock's to store as it is.
"""

from __future__ import annotations

import sys
from pathlib import Path

from wakedock.edge import render

NEXT_RFI = "ctl:ruleRemoveTargetById=931130;ARGS:next"
FILES_EXCLUSION = (
    'SecRule REQUEST_FILENAME "@beginsWith /api/v1/files/" '
    '"id:1003,phase:1,pass,nolog,t:none,chain"',
    '    SecRule REQUEST_METHOD "@streq PUT" "t:none,ctl:ruleRemoveById=920340,'
    'ctl:ruleRemoveById=920341,ctl:ruleRemoveById=920420"',
)


def missing() -> list[str]:
    """The proposed exclusions render.py does not have yet."""
    found = []
    if "931130" not in render.NEXT_EXCLUSION:
        found.append("1002: 931130 on ARGS:next")
    if "/api/v1/files/" not in Path(render.__file__).read_text():
        found.append("1003: 920340, 920341, 920420 on PUT /api/v1/files/")
    return found


def apply() -> list[str]:
    """Patch render.py's rule texts in this process (only in `edge run`'s): what was added."""
    added = missing()
    if "931130" not in render.NEXT_EXCLUSION:
        render.NEXT_EXCLUSION = render.NEXT_EXCLUSION.removesuffix('"') + f',{NEXT_RFI}"'
    if any(line.startswith("1003") for line in added):
        # Rendered after the spec exclusions, one line each, in the admin hosts' block.
        render.SPEC_EXCLUSIONS = (*render.SPEC_EXCLUSIONS, *FILES_EXCLUSION)
    return added


if __name__ == "__main__":
    for line in apply():
        print(f"proposed CRS exclusion, prototyped by the tests: {line}", file=sys.stderr)
    from wakedock.cli import main

    main(prog_name="wakedock")
