"""popray's errors: one base, `PoprayError`, that the CLI reports as one line.

Each kind also derives from the builtin it refines (an `InputError` is a `ValueError`, a
`MissingError` a `FileNotFoundError`), so code that catches the builtin keeps working.
A `PoprayError` is about the user's inputs, options, outputs or storage, and its message
says what to do; a broken invariant inside popray stays a plain `RuntimeError`, and
shows its traceback.
"""

from __future__ import annotations


class PoprayError(Exception):
    """Something the user can act on; the message names the file, row, field or option."""


class InputError(PoprayError, ValueError):
    """The input export (or a media file given to a command) cannot be read as one."""


class ConfigError(PoprayError, ValueError):
    """An option, a configuration file, or a combination of them that cannot be used."""


class MissingError(PoprayError, FileNotFoundError):
    """What a stage reads is not there: a table, a model, a published run; the message
    says which stage writes it."""


class StorageError(PoprayError, ValueError):
    """A location that cannot be used: malformed, unreachable, missing, or refused."""


class LockedError(PoprayError, RuntimeError):
    """Another popray process is writing the same output folder (or published location)."""


class LeaseLost(LockedError):
    """The lease expired while this run held it, and another run took it over."""


class WeightsError(PoprayError, RuntimeError):
    """Backbone weights are missing or do not fit the model."""


class GridError(PoprayError, RuntimeError):
    """The grid did not finish: interrupted (rerun to resume) or trials failed."""


class NothingToTrain(PoprayError, ValueError):
    """No (model, k) cell has enough labelled items for stratified folds."""


class DecodeError(PoprayError):
    """A media file that cannot be decoded; the message says why (for quarantine)."""


class WorkerStartError(PoprayError, RuntimeError):
    """A decoder child process could not be started: not the file's fault, so it fails
    the task (and the run, with this message) instead of quarantining a good file."""


class QueryError(PoprayError, ValueError):
    """A query given to `popray sql` that DuckDB refused."""
