"""Benchmarks: `python -m jobs.benchmark labels|embed ...`.

    python -m jobs.benchmark labels [--posts N] [--per-profile M] [--out OUT]
    python -m jobs.benchmark embed --input data/demo [--images 512] [--device auto] [--photos 256]
    python -m jobs.benchmark dedup [--items 10000 30000 100000]
    python -m jobs.benchmark train --out out     (after `make demo`)
    python -m jobs.benchmark profiles [--profiles 1 10 100 1000] [--posts 40]
    python -m jobs.benchmark step [--repeats 5] [--steps 100]
    python -m jobs.benchmark nightly [--profiles 100] [--posts 40] [--work DIR]
    python -m jobs.benchmark publish --out OUT [--work DIR]
    python -m jobs.benchmark assemble [--items 20000] [--profiles 100] [--like OUT] [--tasks]
    python -m jobs.benchmark send --out OUT
    python -m jobs.benchmark costs --out OUT [--cpus 2] [--save costs.json]   (after popray run)
    python -m jobs.benchmark memory [--images 2000 20000] [--code OTHER_CHECKOUT]
    python -m jobs.benchmark gbdt --out OUT [--k 2] [--model gbdt_video]   (after popray run)

Prints one JSON line per measurement. Speed is measured here, never asserted in tests.
"""

from popray.tools.bench_main import main

if __name__ == "__main__":
    raise SystemExit(main())
