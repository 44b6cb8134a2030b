"""``python -m runcomfy_async``: the same as the ``runcomfy-async`` command."""

from ._cli import entry

entry()
