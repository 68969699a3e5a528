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


def layout_mismatch(error: RuntimeError) -> str | None:
    """What PyTorch's load_state_dict said when saved weights do not fit the network this
    version builds (missing, unexpected or reshaped layers), on one line; None for any other error."""
    if "loading state_dict" not in str(error):
        return None
    lines = [line.strip().rstrip(".") for line in str(error).splitlines()[1:] if line.strip()]
    return "; ".join(lines)
