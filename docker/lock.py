"""Write docker/requirements.lock: the exact versions the image installs, taken from a working environment.

    python docker/lock.py            # rewrite docker/requirements.lock from the active environment
    python docker/lock.py --check    # exit 1 when the lock no longer covers pyproject.toml's requirements

The lock pins the closure of ``wsim-testbed[mysql,mongo,redis,rabbitmq,mqtt,experiments]`` (the experiment image's
extras; the node image's are a subset) at the versions installed in the environment this runs in, which is the one
the test suite passed in. Run it from a Python 3.11 environment on Linux x86-64 (the image's platform) with those
extras installed (``pip install -e '.[all]'``). The Dockerfile builds its wheels with ``-c docker/requirements.lock``,
so a rebuild months later installs the same versions. It is a constraints file rather than ``pip-compile`` output
because the versions that matter are the tested ones, not the newest a resolver finds.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "docker" / "requirements.lock"
IMAGE_EXTRAS = ("mysql", "mongo", "redis", "rabbitmq", "mqtt", "experiments")
# The image's interpreter and platform, whatever this runs on (markers such as sys_platform == "win32").
ENVIRONMENT: dict[str, str] = {k: str(v) for k, v in default_environment().items()} | {
    "python_version": "3.11",
    "sys_platform": "linux",
    "platform_system": "Linux",
}


def project_requirements(extras: tuple[str, ...] = IMAGE_EXTRAS) -> list[Requirement]:
    """pyproject.toml's dependencies plus those of ``extras`` (self-references like ``wsim-testbed[x]`` left out)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    raw = list(project["dependencies"])
    for extra in extras:
        raw += project["optional-dependencies"][extra]
    reqs = [Requirement(r) for r in raw]
    return [r for r in reqs if canonicalize_name(r.name) != canonicalize_name(project["name"])]


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**ENVIRONMENT, "extra": e}) for e in extras or {""})


def closure(roots: list[Requirement]) -> dict[str, str]:
    """{distribution name: installed version} of ``roots`` and everything they need, from this environment."""
    pinned: dict[str, str] = {}
    todo: list[tuple[Requirement, set[str]]] = [(r, set(r.extras)) for r in roots if _applies(r, set())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, extras = todo.pop()
        key = (canonicalize_name(req.name), frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{req.name} is not installed here; install the image's extras first") from None
        pinned[canonicalize_name(req.name)] = dist.version
        for line in dist.requires or []:
            sub = Requirement(line)
            if _applies(sub, extras):
                todo.append((sub, set(sub.extras)))
    return dict(sorted(pinned.items()))


def render(pins: dict[str, str]) -> str:
    head = (
        "# Exact versions of the image's Python dependencies (a pip constraints file).\n"
        f"# Extras: {','.join(IMAGE_EXTRAS)}. Regenerate: python docker/lock.py (see its docstring).\n"
    )
    return head + "".join(f"{name}=={version}\n" for name, version in pins.items())


def read_lock(path: Path = LOCK) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def uncovered(pins: dict[str, str]) -> list[str]:
    """Direct requirements the lock does not pin, or pins at a version the requirement does not allow."""
    out = []
    for req in project_requirements():
        if not _applies(req, set()):
            continue
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            out.append(f"{req} is not pinned")
        elif not req.specifier.contains(version, prereleases=True):
            out.append(f"{req} does not allow the pinned {version}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    if args.check:
        problems = uncovered(read_lock())
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    LOCK.write_text(render(closure(project_requirements())), encoding="utf-8")
    print(f"wrote {LOCK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
