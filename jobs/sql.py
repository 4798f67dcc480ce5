"""`python -m jobs.sql ...`: the `popray sql` stage as a job (also under `ray job submit`)."""

from popray.cli import job

main = job("sql")

if __name__ == "__main__":
    main()
