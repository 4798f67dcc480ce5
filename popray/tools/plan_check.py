"""The capacity plan against a real run: how far off each stage's estimate is.

    popray plan --against OUT --cpus 2

`popray run` writes each stage's wall time to OUT/timings.json (the train stage split
into its phases). This plans a run of OUT's own size (its profiles, posts, and images
and videos per post) with the given unit costs and cluster, and sets each estimate
beside what the run took. Some plan stages are timed together by the run (ingest's
driver and task parts, dedup's read and tasks, the two grids): they are compared as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from popray.errors import MissingError
from popray.records import RunManifest
from popray.tools.plan import plan
from popray.tools.plan_costs import DRIVER_PHASES, METRICS_TASKS_PHASE, READ_PHASE, UnitCosts

# a span the run times -> the plan stages it covers
SPANS = {
    "ingest": ("ingest", "ingest: tasks"),
    "labels": ("labels",),
    "walk-forward labels": ("walk-forward labels",),
    "decode + embed": ("decode + embed", "embed: assemble", "embed: parts to OUT"),  # embed
    "dedup": ("dedup: send", "dedup: read", "dedup"),
    "train: read": ("train: send", "train: read"),
    "train: driver": ("train: driver",),
    "metrics": ("metrics",),
    "grid + final models": ("grid + final models", "walk-forward grid"),
    "cross-profile models": ("cross-profile models",),
    "explain": ("explain",),
    "fixed": ("fixed",),
}


@dataclass(frozen=True)
class Check:
    span: str
    planned: float
    measured: float | None  # None: the run has no timing for it (an older run)

    @property
    def ratio(self) -> float | None:
        """planned / measured: above 1 the plan is pessimistic."""
        if self.measured is None or self.measured <= 0:
            return None
        return self.planned / self.measured


def _measured(run: RunManifest) -> dict[str, float | None]:
    phases, timings = run.train_phases, run.stages
    has = bool(phases)
    return {
        "ingest": timings.get("ingest"),
        "labels": timings.get("label"),
        "walk-forward labels": phases.get("timelines"),
        "decode + embed": timings.get("embed"),
        "dedup": timings.get("dedup"),
        "train: read": phases.get(READ_PHASE),
        "train: driver": sum(phases.get(n, 0.0) for n in DRIVER_PHASES) if has else None,
        "metrics": phases.get(METRICS_TASKS_PHASE),
        "grid + final models": phases.get("grid", 0.0) + phases.get("final", 0.0) if has else None,
        "cross-profile models": phases.get("pooled"),
        "explain": timings.get("explain"),
        "fixed": sum(timings.get(n, 0.0) for n in ("ray_start", "figures", "report")),
    }


def check_run(out: Path, costs: UnitCosts, cpus: int, gpus: int = 0) -> list[Check]:
    """Each span of the run on OUT: the plan's estimate for a run of OUT's size on `cpus`
    cores and `gpus` GPUs, and the measured wall time."""
    from popray.io import store

    run = RunManifest.read(out)
    con = store.connect(out)
    try:
        [(profiles, posts, images, videos)] = con.sql(store.sql_text("plan.run_mix")).fetchall()
    finally:
        con.close()
    if not posts:
        raise MissingError(f"{out}: no posts; nothing to compare")
    stages = plan(
        costs, profiles, posts / profiles, cpus, gpus, mix=(images / posts, videos / posts)
    )
    by_name = {s.name: s.seconds for s in stages}
    measured = _measured(run)
    return [
        Check(span, sum(by_name.get(n, 0.0) for n in names), measured[span])
        for span, names in SPANS.items()
    ]


def check_text(checks: list[Check]) -> str:
    lines = [f"{'stage':<22}{'planned':>10}{'measured':>10}{'planned/measured':>18}"]
    for c in checks:
        measured = "-" if c.measured is None else f"{c.measured:.1f} s"
        ratio = "-" if c.ratio is None else f"{c.ratio:.2f}x"
        lines.append(f"{c.span:<22}{c.planned:>8.1f} s{measured:>10}{ratio:>18}")
    planned = sum(c.planned for c in checks)
    measured = sum(c.measured or 0.0 for c in checks)
    lines.append(f"{'total':<22}{planned:>8.1f} s{measured:>8.1f} s{planned / measured:>17.2f}x")
    return "\n".join(lines)
