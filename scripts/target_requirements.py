"""Requirements of a directory of wheels that hold on another Python version but have no wheel.

`pip wheel` reads environment markers for the Python running it; the image's Python may be
another patch release (Debian's 3.11.2 needs `async-timeout` for redis, 3.11.7 does not), and
`pip download --python-version` does not apply to markers. Prints one requirement per line
(name and version range) for scripts/build-image.sh to download.

Usage: python scripts/target_requirements.py WHEEL_DIR PYTHON_VERSION
"""

from __future__ import annotations

import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename
except ImportError:  # an interpreter without `packaging` installed: pip's own copy
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename


def missing(wheel_dir: Path, python_version: str) -> list[str]:
    """Requirements true on `python_version` (no extras) that no wheel in `wheel_dir` meets."""
    environment = {
        **default_environment(),
        "python_full_version": python_version,
        "python_version": ".".join(python_version.split(".")[:2]),
        "extra": "",
    }
    wheels = sorted(wheel_dir.glob("*.whl"))
    present = {parse_wheel_filename(w.name)[0] for w in wheels}
    wanted: dict[str, str] = {}
    for wheel in wheels:
        version = parse_wheel_filename(wheel.name)[1]
        with zipfile.ZipFile(wheel) as archive:
            metadata = archive.read(f"{wheel.name.split('-')[0]}-{version}.dist-info/METADATA")
        headers = HeaderParser().parsestr(metadata.decode())
        for line in headers.get_all("Requires-Dist") or []:
            requirement = Requirement(line)
            if requirement.marker is None or "extra" in str(requirement.marker):
                continue  # the host's resolution already holds these
            if not requirement.marker.evaluate(environment):
                continue
            key = canonicalize_name(requirement.name)
            if key not in present:
                wanted[key] = f"{requirement.name}{requirement.specifier}"
    return sorted(wanted.values())


if __name__ == "__main__":
    print("\n".join(missing(Path(sys.argv[1]), sys.argv[2])))
