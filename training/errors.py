"""Errors caused by the user's input. The command line prints them as one line and exits 2."""


class UserError(Exception):
    """Bad input (a flag, a file, a data set): the message says what was wrong and what to do."""

    is_user_error = True  # the `ganserve` command line reads this marker


class DataError(UserError):
    """A data source that cannot be read or does not hold usable images."""


class ConfigError(UserError):
    """A training option out of range or inconsistent with the data."""


class CheckpointError(UserError):
    """A checkpoint or release that cannot be loaded safely."""
