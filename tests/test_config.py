"""`configure` and `run_config`: the one way a configuration file and the command line's
options are merged."""

from pathlib import Path

import pytest

from popray.config import RunConfig, StageConfig
from popray.configure import UNSET, configure, run_config
from popray.errors import ConfigError
from popray.io.storage import Location

Q = "?endpoint_override=h:9&scheme=http"  # no region lookup: nothing leaves this machine


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_flags_win_over_the_file_and_an_absent_flag_keeps_it(tmp_path):
    path = _file(tmp_path, 'input_dir = "x"\n[embed]\nviews = 2\nbackbone = "resnet18"\n')
    cfg = configure(path, {"embed.views": 0, "embed.backbone": None, "grid.train.epochs": 3})
    assert isinstance(cfg, RunConfig)  # a file is checked whole
    assert cfg.embed.views == 0 and cfg.embed.backbone == "resnet18"
    assert (
        cfg.grid.train.epochs == 3
        and cfg.grid.train.batch_size == RunConfig(input_dir="x").grid.train.batch_size
    )  # the rest of a nested section stays the default
    assert configure(path, {"grid.k": []}).grid.k == RunConfig(input_dir="x").grid.k
    bare = configure(None, {"label.k": [4]})
    assert type(bare) is StageConfig and bare.label.k == [4]


def test_bad_options_name_their_section_and_the_file(tmp_path):
    path = _file(tmp_path, 'input_dir = "x"\n[label]\nk = [1]\n')
    with pytest.raises(ConfigError, match=rf"invalid label options \(from {path}"):
        configure(path, {})
    with pytest.raises(ConfigError, match=r"invalid embed options: .*views"):
        configure(None, {"embed.views": -1})
    with pytest.raises(ConfigError, match="typo"):
        configure(_file(tmp_path, 'input_dir = "x"\ntypo = 1\n'), {})


def test_unset_removes_what_the_file_says(tmp_path):
    path = _file(tmp_path, 'input_dir = "x"\n[dedup]\nthreshold = 2.0\n')
    assert configure(path, {"dedup.threshold": UNSET}).dedup.threshold is None


def test_run_config_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("POPRAY_SCRATCH", str(tmp_path / "scratch"))
    with pytest.raises(ConfigError, match="give --config FILE or --input DIR"):
        run_config(None)
    local = run_config(None, "export", str(tmp_path / "o"))
    assert local.out_dir == tmp_path / "o" and local.work_dir is None
    path = _file(tmp_path, 'input_dir = "data"\nout_dir = "o"\n')
    assert run_config(path).input_dir == str(tmp_path / "data")
    assert run_config(path).out_dir == tmp_path / "o"  # relative to the file
    new = f"s3://bucket/new{Q}"
    moved = run_config(path, out=new)  # the file's out_dir gives way to the scratch copy
    assert moved.work_dir == moved.publish_to == new
    assert moved.storage == Location.parse(new).child("work").uri
    assert moved.out_dir.parent == tmp_path / "scratch"


def test_out_on_storage_replaces_what_the_file_derived_from_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("POPRAY_SCRATCH", str(tmp_path / "scratch"))
    old, new = f"s3://bucket/old{Q}", f"s3://bucket/new{Q}"
    work = {uri: Location.parse(uri).child("work").uri for uri in (old, new)}
    path = _file(
        tmp_path,
        f'input_dir = "x"\nwork_dir = "{old}"\npublish_to = "{old}"\nstorage = "{work[old]}"\n',
    )
    cfg = run_config(path, out=new)
    assert (cfg.work_dir, cfg.publish_to, cfg.storage) == (new, new, work[new])
    mine = Location.parse(old).child("x").uri
    kept = _file(tmp_path, f'input_dir = "x"\nwork_dir = "{old}"\nstorage = "{mine}"\n')
    assert run_config(kept, out=new).storage == mine  # chosen, not derived: kept
    scratch = run_config(kept, out=str(tmp_path / "mine"))  # a local --out: the scratch copy
    assert scratch.work_dir == old and scratch.out_dir == tmp_path / "mine"
