import subprocess
import sys

from typer.testing import CliRunner

from popray.cli import app

runner = CliRunner()


def _rows(table: str) -> list[list[str]]:
    """The data rows of a table `popray sql` printed (DuckDB's box: name, type, rows)."""
    lines = [line for line in table.splitlines() if line.startswith("│")]
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in lines[2:]]


def test_run_prints_summary_and_outputs(ray_session, tiny_input, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "--input", str(tiny_input), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "class balance" in result.output and "quarantine" in result.output
    assert "embedded" in result.output and "quarantined_at_embed" in result.output
    assert (out / "popray.duckdb").exists()
    q = runner.invoke(app, ["sql", "--out", str(out), "SELECT count(*) AS n FROM quarantine"])
    assert q.exit_code == 0 and _rows(q.output) == [["14"]]  # 10 bad rows + 4 corrupt media


def test_run_from_config_file(ray_session, tiny_input, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"input_dir: {tiny_input}\nout_dir: o\nlabel:\n  k: [4]\n"
        "embed:\n  backbone: mobilenetv3_small_050\n  weights: random\n  views: 0\n"
        "dedup:\n  threshold: 1.0\n"
    )
    result = runner.invoke(app, ["run", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    ks = runner.invoke(app, ["sql", "--out", str(tmp_path / "o"), "SELECT DISTINCT k FROM labels"])
    assert _rows(ks.output) == [["4"]]  # the file's k, not the default 2 and 3


def test_errors_are_one_clear_line_and_exit_2(tmp_path):
    missing = runner.invoke(
        app, ["ingest", "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    )
    assert missing.exit_code == 2 and "input folder not found" in missing.output
    bad_k = runner.invoke(app, ["label", "--out", str(tmp_path), "--k", "1"])
    assert bad_k.exit_code == 2 and "invalid label options" in bad_k.output
    not_run = runner.invoke(app, ["label", "--out", str(tmp_path)])
    assert not_run.exit_code == 2 and "run the stage" in not_run.output


def test_job_module_runs_from_a_fresh_process(tiny_input, tmp_path):
    out = tmp_path / "jobout"
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.ingest", "--input", str(tiny_input), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "quarantine 10" in proc.stdout


def test_a_second_writer_on_the_same_out_refuses_and_a_dead_holder_frees_it(tmp_path):
    """A real second process: `popray label` on an OUT another process holds."""
    import os
    import signal
    import time

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from popray.io import store\n"
            f"with store.exclusive(Path({str(tmp_path)!r}), 'run'):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    second = subprocess.run(
        [sys.executable, "-m", "jobs.label", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert second.returncode == 2
    assert "is being written by another popray run" in second.stderr
    assert f"pid {holder.pid}" in second.stderr and "`popray run`" in second.stderr
    os.kill(holder.pid, signal.SIGKILL)  # a crash: the kernel drops the lock
    holder.wait()
    time.sleep(0.1)
    from popray.io import store

    with store.exclusive(tmp_path, "label"):
        pass


def test_a_popray_error_is_one_line_and_exit_2_anything_else_a_traceback(monkeypatch, tmp_path):
    """The CLI catches `PoprayError` in one place, for every command; a bug (any other
    exception) is not turned into a tidy message."""
    import popray.report
    from popray.errors import GridError, MissingError

    for exc in (GridError("the grid stopped"), MissingError("no table x; run `popray y`")):

        def fails(out, exc=exc):
            raise exc

        monkeypatch.setattr(popray.report, "write_report", fails)
        result = runner.invoke(app, ["report", "--out", str(tmp_path)])
        assert result.exit_code == 2
        assert result.output.strip() == f"popray: error: {exc}"

    def bug(out):
        raise KeyError("a bug")

    monkeypatch.setattr(popray.report, "write_report", bug)
    result = runner.invoke(app, ["report", "--out", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)
    assert "popray: error" not in result.output


def test_every_command_with_configurable_options_takes_config():
    """`--config` on every command whose options live in the run configuration; the
    others have none there (the sample's size, a query, a plan's cluster)."""
    import typer.main

    without = {"sample", "report", "sql", "summary", "plan", "schemas"}
    group = typer.main.get_group(app)
    for name, cmd in group.commands.items():
        has = any(p.name == "config" for p in cmd.params)
        assert has == (name not in without), name


def test_stage_commands_read_their_options_from_config(monkeypatch, tmp_path):
    """`popray dedup --config run.toml` compares the file's backbone at its threshold
    (it used to ignore --config and use the defaults); a flag still wins over the file."""
    import popray.dedup

    seen = {}

    def fake_dedup(out, cfg, backbone, echo):
        import pyarrow as pa

        seen.update(threshold=cfg.threshold, backbone=backbone)
        dups = pa.table({"kept": [True, False], "group_id": [0, 0]})
        return popray.dedup.DedupReport(dups, pa.table({"x": [1, 2]}), cfg.threshold_for(backbone))

    monkeypatch.setattr(popray.dedup, "run_dedup", fake_dedup)
    cfg = tmp_path / "run.toml"
    cfg.write_text('input_dir = "x"\n[embed]\nbackbone = "resnet18"\n[dedup]\nthreshold = 3.5\n')
    out = tmp_path / "o"
    result = runner.invoke(app, ["dedup", "--out", str(out), "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert seen == {"threshold": 3.5, "backbone": "resnet18"}
    assert "1 near-duplicates in 1 groups (threshold 3.5); 2 items compared" in result.output
    args = ["dedup", "--out", str(out), "--config", str(cfg), "--threshold", "2"]
    assert runner.invoke(app, args).exit_code == 0
    assert seen == {"threshold": 2.0, "backbone": "resnet18"}
