"""Which requirement specifiers an interpreter already satisfies.

Used by the process engine (is the current interpreter good enough, or is a virtual
environment needed?) and inside images built from a generated Dockerfile (install only what
the base image lacks). Run as a module it checks or installs a requirements file::

    python -m aml_core.oci.requirements --check requirements.txt    # exit 1 if unmet
    python -m aml_core.oci.requirements --install requirements.txt  # pip-install the unmet
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from aml_core.errors import InvalidConfig


def parse(requirement: str) -> Requirement:
    try:
        return Requirement(requirement)
    except InvalidRequirement as exc:
        raise InvalidConfig(
            f"{requirement!r} is not a valid pip requirement ({exc}); "
            "use the form 'name', 'name>=1.2' or 'name[extra]==1.2'."
        ) from exc


def unmet(requirements: Iterable[str], *, search_path: list[str] | None = None) -> list[str]:
    """The requirements not satisfied by the distributions visible on ``search_path``.

    ``search_path`` defaults to ``sys.path``. Requirements whose environment marker does not
    apply are ignored; extras are checked one level deep (each extra's own requirements).
    """
    path = sys.path if search_path is None else search_path
    installed: dict[str, str] = {}
    for dist in metadata.distributions(path=path):
        name = dist.metadata["Name"]
        if name:
            installed.setdefault(canonicalize_name(name), dist.version)
    missing = []
    for text in requirements:
        req = parse(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = installed.get(canonicalize_name(req.name))
        if version is None or (
            req.specifier and not req.specifier.contains(version, prereleases=True)
        ):
            missing.append(text)
    return missing


def read_requirements(path: Path) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aml_core.oci.requirements")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", type=Path, metavar="FILE")
    group.add_argument("--install", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    todo = unmet(read_requirements(args.check or args.install))
    if not todo:
        print("all requirements are satisfied")
        return 0
    if args.check:
        print("unmet requirements: " + ", ".join(todo))
        return 1
    return subprocess.call([sys.executable, "-m", "pip", "install", "--no-cache-dir", *todo])


if __name__ == "__main__":  # pragma: no cover - exercised inside images
    sys.exit(main())
