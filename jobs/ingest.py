"""`python -m jobs.ingest ...`: the `popray ingest` stage as a job (also under `ray job submit`)."""

from popray.cli import app


def main() -> None:
    app(["ingest", *__import__("sys").argv[1:]], prog_name="python -m jobs.ingest")


if __name__ == "__main__":
    main()
