"""`python -m jobs.report ...`: the `popray report` stage as a job (`ray job submit` too)."""

from popray.cli import job

main = job("report")

if __name__ == "__main__":
    main()
