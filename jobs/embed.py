"""`python -m jobs.embed ...`: the `popray embed` stage as a job (also under `ray job submit`)."""

from popray.cli import app


def main() -> None:
    app(["embed", *__import__("sys").argv[1:]], prog_name="python -m jobs.embed")


if __name__ == "__main__":
    main()
