"""`python -m jobs.sample ...`: the `popray sample` stage as a job (also under `ray job submit`)."""

from popray.cli import app


def main() -> None:
    app(["sample", *__import__("sys").argv[1:]], prog_name="python -m jobs.sample")


if __name__ == "__main__":
    main()
