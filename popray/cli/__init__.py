"""The `popray` command line (`popray.cli:app`): the stage commands (`stages`), the other
commands (`tools`), on the app and error handling of `app`."""

from popray.cli import stages, tools  # noqa: F401  (each registers its commands on `app`)
from popray.cli.app import app, job

__all__ = ["app", "job"]
