"""Thin entry points, one per stage: `python -m jobs.<stage> ...`; `jobs.run` chains them."""
