"""Errors that reach the user as one line and exit code 2.

Anything raised as a :class:`UserError` (or a subclass) is bad input: the CLI prints
``error: <message>`` on stderr, with no traceback, and exits with status 2. Messages
say what is wrong *and* how to fix it. Every other exception is an internal failure
(exit 1, traceback written to the log file).
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a one-line message saying what is wrong and how to fix it."""


class DataError(UserError):
    """A dataset is missing, malformed or does not fit the request."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupted, untrusted or does not match the data."""


class ParameterError(UserError):
    """A hyperparameter or option is unknown or has the wrong type or value."""


class TrainingDiverged(UserError):
    """A loss turned NaN or exploded; the message names the method, step and loss."""
