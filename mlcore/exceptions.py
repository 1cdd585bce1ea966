"""Exceptions raised by mlcore; each subclasses a built-in so callers can catch broadly."""


class InputDataError(ValueError):
    """An input file or frame breaks the data contract (the message names file, row, column)."""


class ModelNotFoundError(LookupError):
    """No model (or no champion) is registered for the requested tier."""


class ArtifactIntegrityError(RuntimeError):
    """A model artifact's sha256 differs from the one the registry vouches for."""


class ConfigError(ValueError):
    """A setting is missing or has a value outside what it accepts, or the install lacks its schema files."""


class DataQualityError(RuntimeError):
    """Published predictions failed a data-quality check (row count, nulls, ranges)."""


class LockTimeoutError(RuntimeError):
    """A lock another session holds was not released within the timeout (the message names the lock)."""
