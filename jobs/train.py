"""`python -m jobs.train ...`: the `popray train` stage as a job (also under `ray job submit`)."""

from popray.cli import job

main = job("train")

if __name__ == "__main__":
    main()
