"""`python -m jobs.run ...`: the `popray run` stage as a job (also under `ray job submit`)."""

from popray.cli import job

main = job("run")

if __name__ == "__main__":
    main()
