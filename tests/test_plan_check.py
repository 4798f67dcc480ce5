"""The plan set beside a real run's stage times."""

from __future__ import annotations

import duckdb
import pytest
from plan_helpers import write_run
from typer.testing import CliRunner

from popray.io import store
from popray.tools.plan import plan
from popray.tools.plan_check import SPANS, check_run, check_text
from popray.tools.plan_costs import UnitCosts


@pytest.fixture
def run_out(tmp_path, monkeypatch):
    """An OUT whose run took known times: 4 profiles, 30 posts, 36 images, 9 videos."""
    out = tmp_path / "out"
    out.mkdir()
    write_run(out)
    con = duckdb.connect()
    con.sql(
        "CREATE TABLE posts AS SELECT 'p' || (i % 4) AS profile_id FROM range(30) t(i);"
        "CREATE TABLE media AS SELECT CASE WHEN i < 36 THEN 'image' ELSE 'video' END "
        "AS media_type FROM range(45) t(i)"
    )
    monkeypatch.setattr(store, "connect", lambda out: con)
    return out


def test_each_span_is_the_plan_for_the_runs_own_size_beside_its_time(run_out):
    costs = UnitCosts()
    checks = {c.span: c for c in check_run(run_out, costs, cpus=2)}
    assert list(checks) == list(SPANS)
    stages = {s.name: s.seconds for s in plan(costs, 4, 7.5, 2, mix=(36 / 30, 9 / 30))}
    dedup = sum(stages[s] for s in ("dedup: send", "dedup: read", "dedup"))
    assert checks["dedup"].planned == pytest.approx(dedup)
    train_read = stages["train: send"] + stages["train: read"]
    assert checks["train: read"].planned == pytest.approx(train_read)
    embedding = sum(stages[s] for s in ("decode + embed", "embed: assemble", "embed: parts to OUT"))
    assert checks["decode + embed"].planned == pytest.approx(embedding)
    assert checks["train: read"].measured == 2  # the load phase
    assert checks["train: driver"].measured == 1 + 2 + 1  # plan, collect, metrics
    assert checks["grid + final models"].measured == 23 + 4
    assert checks["walk-forward labels"].measured == 3
    assert checks["fixed"].measured == 3 + 6 + 1
    embed = checks["decode + embed"]
    assert embed.ratio == pytest.approx(embed.planned / 40)
    text = check_text(list(checks.values()))
    assert text.splitlines()[-1].startswith("total")
    assert f"{embed.ratio:.2f}x" in text


def test_the_cli_compares_and_says_what_is_missing(run_out, tmp_path):
    from popray.cli import app

    result = CliRunner().invoke(app, ["plan", "--against", str(run_out), "--cpus", "2"])
    assert result.exit_code == 0, result.output
    assert "decode + embed" in result.output and "planned/measured" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["plan", "--against", str(empty)])
    assert result.exit_code != 0 and "timings.json: missing" in result.output
    result = CliRunner().invoke(app, ["plan", "--cpus", "2"])
    assert result.exit_code != 0 and "--profiles" in result.output
