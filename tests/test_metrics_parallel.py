"""metrics_by_cell: the metrics table scored one cell per Ray task equals the one scored
in one piece, row for row and bit for bit."""

import numpy as np
import pyarrow as pa

from popray.io.tables import table_schema
from popray.training import metrics_parallel
from popray.training.evaluate import compute_metrics


def _predictions(rng):
    rows, recent, targets = [], {}, {}
    for protocol in ("stratified_kfold", "walk_forward"):
        for model in ("image", "video"):
            for k in (2, 3):
                for seed in (0, 1):
                    for profile in ("a", "b", "c"):
                        for i in range(12):
                            media = f"{profile}-{model}-{i}"
                            proba = rng.dirichlet(np.ones(k)).astype(np.float32)
                            y = int(rng.integers(0, k))
                            rows.append(
                                {
                                    "scheme": "por_rolling",
                                    "backbone": "b",
                                    "features": "embedding",
                                    "model": model,
                                    "k": k,
                                    "profile_id": profile,
                                    "protocol": protocol,
                                    "seed": seed,
                                    "fold": i % 5,
                                    "media_id": media,
                                    "label": y,
                                    "pred": int(proba.argmax()),
                                    "proba": proba.tolist(),
                                }
                            )
                            key = (protocol, k, media)
                            recent[key] = None if i == 0 else int(rng.integers(0, k))
                            targets[key] = (float(rng.random()), None if i == 0 else 0.5)
    order = rng.permutation(len(rows))  # cells interleaved, as trials come back
    return (
        pa.Table.from_pylist([rows[i] for i in order], schema=table_schema("predictions")),
        recent,
        targets,
    )


def test_the_cells_scored_in_tasks_give_the_same_table(ray_session, monkeypatch):
    predictions, recent, targets = _predictions(np.random.default_rng(0))
    whole = compute_metrics(predictions, recent, targets)
    monkeypatch.setattr(metrics_parallel, "MIN_ROWS", 0)
    waited: list[float] = []
    by_cell = metrics_parallel.metrics_by_cell(predictions, recent, targets, waited)
    assert waited  # the cells went to tasks
    assert by_cell.equals(whole)
    assert whole.num_rows == 2 * 2 * 2 * (3 + 1)  # each cell: 3 profiles and the pooled row
    none = metrics_parallel.metrics_by_cell(predictions)  # no baselines, no ranking targets
    assert none.equals(compute_metrics(predictions))
