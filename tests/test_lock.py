"""requirements.lock: every dependency pinned, and the suite runs on exactly those versions."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, sep, version = line.partition("==")
            assert sep, f"requirements.lock: {line!r} is not pinned with =="
            pins[_norm(name)] = version.strip()
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    return [Requirement(r) for r in reqs]


def test_every_declared_dependency_is_locked_within_its_range():
    pins = _locked()
    for req in _declared():
        name = _norm(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in the lock: `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"the lock pins {req.name}=={pins[name]}, outside pyproject.toml's {req.specifier}"
        )


def test_the_suite_runs_on_the_locked_versions():
    """What `make test` installed is the lock (a drifted venv: `make venv` resyncs it)."""
    pins = _locked()
    drift = {}
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            drift[name] = (version, None)
            continue
        if installed.split("+")[0] != version:  # torch's local tag: 2.14.1+cu130
            drift[name] = (version, installed)
    assert not drift, f"installed versions differ from requirements.lock: {drift}"
