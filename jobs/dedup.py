"""`python -m jobs.dedup ...`: the `popray dedup` stage as a job (also under `ray job submit`)."""

from popray.cli import app


def main() -> None:
    app(["dedup", *__import__("sys").argv[1:]], prog_name="python -m jobs.dedup")


if __name__ == "__main__":
    main()
