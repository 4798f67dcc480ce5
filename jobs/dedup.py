"""`python -m jobs.dedup ...`: the `popray dedup` stage as a job (also under `ray job submit`)."""

from popray.cli import job

main = job("dedup")

if __name__ == "__main__":
    main()
