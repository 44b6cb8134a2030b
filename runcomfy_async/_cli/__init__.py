"""The ``runcomfy-async`` command: arguments, input readers, progress and the gallery."""

from ._main import entry

__all__ = ["entry"]
