"""`python -m jobs.benchmark gbdt --out OUT`: the gradient-boosted baseline on a PCA of
the embedding (what `gbdt` does) against the raw embedding, on a finished run's items.

Each profile's stratified folds (seed 0, the grid's folds for the model), the same
leaf size: accuracy and Spearman ρ of the out-of-fold predictions, ranked within each
profile, and the fitting time, per variant.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from popray.io import store
from popray.training.baselines import ranking_targets
from popray.training.folds import fold_data, split
from popray.training.loading import load_dataset
from popray.training.models import PCA_COMPONENTS, GbdtModel
from popray.training.ranking import expected_score, spearman


def bench_gbdt(
    out: Path, backbone: str, k: int = 2, scheme: str = "por_rolling", model: str = "gbdt"
) -> list[dict]:
    """One row per variant (PCA_COMPONENTS components, raw): accuracy, ρ, fit seconds."""
    ds = load_dataset(out, backbone, k, scheme)
    targets = ranking_targets(store.read_table(out, "labels"), scheme)
    rows = []
    for pca in (PCA_COMPONENTS, None):
        ids, profiles, hits, scores, fit_s = [], [], [], [], 0.0
        for profile in ds.profiles():
            own = ds.for_profile(profile)
            try:
                folds = split(own, model, 0, 5, k)
            except ValueError:  # too few items for 5 folds: the grid skips it too
                continue
            for fold in folds:
                data = fold_data(own, model, fold)
                x, y = data.x_train, data.y_train
                if data.train_views:  # every view a row, as `fit._fit_gbdt` does
                    x, y = x.reshape(-1, x.shape[-1]), np.repeat(y, data.x_train.shape[1])
                start = time.perf_counter()
                net = GbdtModel(x.shape[-1], k, pca).fit(x, y, seed=0)
                fit_s += time.perf_counter() - start
                with torch.inference_mode():
                    proba = torch.softmax(net(torch.as_tensor(data.x_val)), 1).numpy()
                ids += fold.val
                profiles += [profile] * len(fold.val)
                hits += list(data.y_val == proba.argmax(axis=1))
                scores += list(expected_score(proba))
        target = np.array([targets[(k, m)][0] for m in ids], np.float64)
        rho, p = spearman(np.array(scores), target, np.array(profiles))
        rows.append(
            {
                "bench": "gbdt",
                "model": model,
                "k": k,
                "input": f"pca{pca}" if pca else "raw",
                "items": len(ids),
                "profiles": len(set(profiles)),
                "accuracy": float(np.mean(hits)),
                "spearman": rho,
                "spearman_p": p,
                "fit_s": round(fit_s, 2),
            }
        )
    return rows
