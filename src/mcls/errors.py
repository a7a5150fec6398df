"""User-facing errors.

`McLSError` carries a message that names the file / key / video at fault and says what to do.
The CLI prints it without a traceback and exits with status 2; anything else is a bug and
keeps its traceback.
"""


class McLSError(Exception):
    """An error caused by input or configuration, explained for the user."""


class ConfigError(McLSError):
    """The configuration does not validate."""


class DataError(McLSError):
    """An input file is malformed (wrong line counts, bad bytes, duplicates, missing features…)."""


class DownloadError(McLSError):
    """A download failed or its checksum did not match."""
