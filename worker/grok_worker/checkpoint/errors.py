"""The one error type of the checkpoint package (its own module so every other module can raise it)."""


class CheckpointFormatError(ValueError):
    """A checkpoint file that is not what the release format and the model config say it must be."""
