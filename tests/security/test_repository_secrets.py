"""No secret is committed: every tracked file is scanned with detect-secrets, and anything it
finds must be in the reviewed baseline (`.secrets.baseline`, each entry marked not a secret:
permission names, deliberately fake test credentials, documentation examples)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.security
ROOT = Path(__file__).resolve().parents[2]


def _scan(files: list[str], cwd: Path) -> dict[str, list[dict[str, object]]]:
    tool = shutil.which("detect-secrets") or str(Path(sys.executable).parent / "detect-secrets")
    done = subprocess.run(
        [tool, "scan", *files], cwd=cwd, capture_output=True, text=True, check=True, timeout=300
    )
    results: dict[str, list[dict[str, object]]] = json.loads(done.stdout)["results"]
    return results


def _found(results: dict[str, list[dict[str, object]]]) -> set[tuple[str, object]]:
    return {(name, item["hashed_secret"]) for name, items in results.items() for item in items}


def test_tracked_files_hold_no_unreviewed_secret() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    files = [name for name in listing if name != ".secrets.baseline"]  # hashes, not secrets
    baseline = json.loads((ROOT / ".secrets.baseline").read_text())["results"]
    assert all(item["is_secret"] is False for items in baseline.values() for item in items), (
        "every baseline entry must be reviewed (is_secret: false)"
    )
    results = _scan(files, ROOT)
    new = _found(results) - _found(baseline)
    listed = [
        f"{name}:{item['line_number']} {item['type']}"
        for name, items in results.items()
        for item in items
        if (name, item["hashed_secret"]) in new
    ]
    assert not listed, "possible secrets committed (review, then update .secrets.baseline):\n" + (
        "\n".join(listed)
    )


def test_the_scan_catches_a_planted_key(tmp_path: Path) -> None:
    # Built at run time, so that this file does not itself hold a key-shaped string.
    planted = "AKIA" + "QYLPMN5HJUIX3QWE"
    secret_line = "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "6sR9q2Lk1"
    (tmp_path / "settings.py").write_text(f'KEY_ID = "{planted}"\n{secret_line}\n')
    found = _scan(["settings.py"], tmp_path)
    kinds = {item["type"] for item in found.get("settings.py", [])}
    assert "AWS Access Key" in kinds
