"""A finished run's manifest with known stage times, for the capacity-plan tests."""

from __future__ import annotations

from pathlib import Path

from popray.records import RunManifest

STAGES = {"ray_start": 3, "ingest": 1, "label": 0.5, "embed": 40, "dedup": 2}
STAGES |= {"train": 40, "explain": 4, "figures": 6, "report": 1}
# 13 s of the train stage: 2 s the read, 4 s the driver's own, 4 s cross-profile tasks,
# 3 s the walk-forward labelling tasks
PHASES = {"load": 2, "plan": 1, "timelines": 3, "grid": 23, "collect": 2}
PHASES |= {"metrics": 1, "pooled": 4, "final": 4}


def write_run(out: Path, stages: dict | None = None, phases: dict | None = None) -> RunManifest:
    """OUT/timings.json of a run that took STAGES and PHASES, with `stages` and `phases`
    changed."""
    run = RunManifest(STAGES | (stages or {}), PHASES | (phases or {}))
    run.write(out)
    return run
