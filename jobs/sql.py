"""`python -m jobs.sql ...`: the `popray sql` stage as a job (also under `ray job submit`)."""

from popray.cli import app


def main() -> None:
    app(["sql", *__import__("sys").argv[1:]], prog_name="python -m jobs.sql")


if __name__ == "__main__":
    main()
