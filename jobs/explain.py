"""`python -m jobs.explain ...`: the `popray explain` stage as a job (`ray job submit` too)."""

from popray.cli import job

main = job("explain")

if __name__ == "__main__":
    main()
