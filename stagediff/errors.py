"""Errors the library raises for bad input; each message names the problem and the fix."""


class StageDiffError(Exception):
    """Base class of every error stagediff raises on purpose."""


class ConfigError(StageDiffError, ValueError):
    """A configuration value is unknown, of the wrong type or inconsistent."""


class DataError(StageDiffError, ValueError):
    """Input data cannot be used as it is (types, missing values, timestamps, length, channels)."""
