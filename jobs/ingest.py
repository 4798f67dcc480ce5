"""`python -m jobs.ingest ...`: the `popray ingest` stage as a job (also under `ray job submit`)."""

from popray.cli import job

main = job("ingest")

if __name__ == "__main__":
    main()
