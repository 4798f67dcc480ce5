"""`python -m jobs.benchmark labels [--posts N] [--per-profile M] [--out OUT]`: benchmarks.

Prints one JSON line per measurement. Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from popray.bench import bench_labels, bench_labels_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.benchmark")
    sub = parser.add_subparsers(dest="what", required=True)
    lab = sub.add_parser("labels", help="time the labelling SQL")
    lab.add_argument("--posts", type=int, default=1_000_000)
    lab.add_argument("--per-profile", type=int, default=1_000)
    lab.add_argument("--out", type=Path, help="also time labelling this ingested OUT")
    args = parser.parse_args(argv)
    if args.what == "labels":
        print(
            json.dumps({"bench": "labels_synthetic"} | bench_labels(args.posts, args.per_profile))
        )
        if args.out:
            print(
                json.dumps(
                    {"bench": "labels_out", "out": str(args.out)} | bench_labels_out(args.out)
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
