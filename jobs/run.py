"""`python -m jobs.run ...`: the `popray run` stage as a job (also under `ray job submit`)."""

from popray.cli import app


def main() -> None:
    app(["run", *__import__("sys").argv[1:]], prog_name="python -m jobs.run")


if __name__ == "__main__":
    main()
