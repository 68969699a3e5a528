"""Errors the serving side raises for bad input; HTTP answers them with 4xx, the CLI with one line."""


class ServingError(Exception):
    """Bad input from a user: the message names the field, the value and what is allowed."""

    is_user_error = True  # the `ganserve` command line reads this marker
    status_code = 400


class ModelFolderError(ServingError):
    """A model folder that cannot be served (missing files, wrong hashes, newer format)."""


class NoDiscriminator(ServingError):
    """A request that needs D, of a model imported as a generator only."""


class NoEncoder(ServingError):
    """A projection, of a model exported without an encoder (`ganserve train-encoder` makes one)."""


class NoTrainIndex(ServingError):
    """A memorisation check, of a model exported without an index of its training images."""
