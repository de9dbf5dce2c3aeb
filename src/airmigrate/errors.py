"""Exceptions that tell the user what went wrong and whether a retry can help.

A :class:`TransientError` (lock timeout, connection reset, serialization failure) is
worth an Airflow retry; every other :class:`AirmigrateError` is terminal: retrying
would fail the same way, so the task fails at once with a message saying how to recover.
"""


class AirmigrateError(Exception):
    """Base of every error airmigrate raises on purpose."""


class FieldProblem(ValueError):
    """A spec validator's complaint that carries its own fix (read by airmigrate.spec's _parse_spec, which turns it
    into a SpecError naming the file and the field)."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.fix = fix


class SpecError(AirmigrateError):
    """A migration folder or expectations file is wrong: names the file, the field and the fix."""

    def __init__(self, file, field, problem, fix):
        self.file, self.field, self.problem, self.fix = str(file), field, problem, fix
        super().__init__(f"{self.file}: {field}: {problem}. Fix: {fix}")


class TransientError(AirmigrateError):
    """A failure a retry can cure (lock timeout, lost connection)."""


class PreflightError(AirmigrateError):
    """The target is not in a state where the migration may start."""


class BackfillError(AirmigrateError):
    """Batches failed after their retries; carries the failed ranges."""

    def __init__(self, message, failed_batches=()):
        self.failed_batches = list(failed_batches)
        super().__init__(message)


class ValidationFailed(AirmigrateError):
    """Great Expectations found rows that break the migration's expectations."""
