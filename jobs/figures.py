"""`python -m jobs.figures ...`: the `popray figures` stage as a job (`ray job submit` too)."""

from popray.cli import job

main = job("figures")

if __name__ == "__main__":
    main()
