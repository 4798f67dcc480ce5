"""`python -m jobs.label ...`: the `popray label` stage as a job (also under `ray job submit`)."""

from popray.cli import job

main = job("label")

if __name__ == "__main__":
    main()
