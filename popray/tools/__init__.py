"""Around the job, not in it: sample exports (`sample`, `sample_media`), the capacity
plan (`plan`, `plan_check`) and the benchmarks behind `python -m jobs.benchmark`
(`bench*`)."""
