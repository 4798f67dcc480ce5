"""The one way options are merged (`configure`): a TOML or YAML configuration file,
checked whole, then the command line's options on top; `run_config` for `popray run`.
Invalid options raise one `ConfigError` naming the section, the field and the value.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from popray.config import RunConfig, StageConfig
from popray.errors import ConfigError
from popray.io.storage import Location


def _read(path: Path) -> dict[str, Any]:
    """A configuration file's data; its relative folders made relative to the file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(text) or {}
    else:
        raise ConfigError(f"{path}: configuration must be .toml, .yaml or .yml")
    if isinstance(data.get("input_dir"), str) and "://" not in data["input_dir"]:
        data["input_dir"] = str(path.parent / data["input_dir"])
    if "out_dir" in data or not data.get("work_dir"):  # else: the work folder's scratch copy
        data["out_dir"] = path.parent / data.get(
            "out_dir", RunConfig.model_fields["out_dir"].default
        )
    return data


def load_config(path: Path) -> RunConfig:
    """Read a run configuration from a TOML or YAML file; relative paths are relative to it.
    An invalid file raises pydantic's `ValidationError`."""
    return RunConfig.model_validate(_read(path))


def configure(path: Path | None, options: dict[str, Any], run: bool = False) -> StageConfig:
    """The one way options are merged: the configuration file at `path` (or the defaults),
    then the command line's `options` on top. Keys are dotted ("embed.views",
    "grid.train.epochs"); a value of None, or an empty list, is an option not given, and
    `UNSET` removes what the file says. A file is always checked whole, as a `RunConfig`
    (every key known); without one, a stage command gets a `StageConfig`, and `run`
    (needing the input folder) a `RunConfig`."""
    return _merged(_read(path) if path is not None else {}, path, options, run)


def _merged(data: dict[str, Any], path: Path | None, options: dict[str, Any], run: bool):
    """`configure` on the file's data already read."""
    for key, value in options.items():
        if value is None or value == []:
            continue
        *parents, leaf = key.split(".")
        node = data
        for name in parents:
            node = node.setdefault(name, {})
        if value is UNSET:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    model = RunConfig if run or path is not None else StageConfig
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        sections = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
        what = " and ".join(s for s in sections if s in SECTIONS) or "run"
        where = f" (from {path} and the command line)" if path is not None else ""
        raise ConfigError(f"invalid {what} options{where}: {_errors(exc)}") from None


def _errors(exc: ValidationError) -> str:
    """pydantic's errors as one line each: the field, what is wrong, what was given."""
    lines = []
    for e in exc.errors():
        given = "" if isinstance(e["input"], dict) else f" (given {e['input']!r})"
        field = ".".join(str(part) for part in e["loc"])
        lines.append(f"{field + ': ' if field else ''}{e['msg']}{given}")
    return "; ".join(lines)


SECTIONS = ("label", "embed", "dedup", "grid")
UNSET: Any = object()  # an option that removes the file's value (see `configure`)


def run_config(
    path: Path | None,
    input_dir: str | None = None,
    out: str | None = None,
    publish_to: str | None = None,
    storage: str | None = None,
) -> RunConfig:
    """`popray run`'s configuration: the file, then --input, --out, --publish-to and
    --storage. `--out s3://...` names a work folder on storage: what the file derived from
    its own work folder (the scratch copy, the published location, the workers' storage)
    then follows the new one."""
    if path is None and input_dir is None:
        raise ConfigError("give --config FILE or --input DIR")
    file = _read(path) if path is not None else {}  # read once
    options: dict[str, Any] = {
        "input_dir": input_dir,
        "publish_to": publish_to,
        "storage": storage,
    }
    if out and "://" in out:
        options |= {"work_dir": out, "out_dir": UNSET, "publish_to": publish_to or UNSET}
        before = file.get("work_dir")
        if (
            before
            and not storage
            and file.get("storage") == Location.parse(before).child("work").uri
        ):
            options["storage"] = UNSET
    elif out:
        options["out_dir"] = Path(out)
    cfg = _merged(file, path, options, run=True)
    assert isinstance(cfg, RunConfig)
    return cfg
