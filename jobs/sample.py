"""`python -m jobs.sample ...`: the `popray sample` stage as a job (also under `ray job submit`)."""

from popray.cli import job

main = job("sample")

if __name__ == "__main__":
    main()
