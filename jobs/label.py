"""`python -m jobs.label ...`: the `popray label` stage as a job (also under `ray job submit`)."""

from popray.cli import app


def main() -> None:
    app(["label", *__import__("sys").argv[1:]], prog_name="python -m jobs.label")


if __name__ == "__main__":
    main()
