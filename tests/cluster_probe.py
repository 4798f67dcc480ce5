"""Submitted as a Ray job to the two-node test cluster (tests/multinode.py): which node the
driver and a task pinned to the worker run on, and which of the given paths each sees.

    python tests/cluster_probe.py RESOURCE PATH...   -> prints one line "PROBE {json}"
"""

import json
import os
import sys

import ray


def _look(paths: list[str]) -> dict:
    return {
        "node": ray.get_runtime_context().get_node_id(),
        "exists": {p: os.path.exists(p) for p in paths},
    }


def main() -> None:
    resource, paths = sys.argv[1], sys.argv[2:]
    ray.init()
    remote = ray.remote(num_cpus=0.1, resources={resource: 1})(_look)
    there = ray.get(remote.remote(paths))
    print("PROBE " + json.dumps({"driver": _look(paths), "worker": there}))


if __name__ == "__main__":
    main()
