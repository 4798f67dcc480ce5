"""`python -m jobs.predict ...`: the `popray predict` command as a job (`ray job submit` too)."""

from popray.cli import job

main = job("predict")

if __name__ == "__main__":
    main()
