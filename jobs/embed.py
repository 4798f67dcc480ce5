"""`python -m jobs.embed ...`: the `popray embed` stage as a job (also under `ray job submit`)."""

from popray.cli import job

main = job("embed")

if __name__ == "__main__":
    main()
