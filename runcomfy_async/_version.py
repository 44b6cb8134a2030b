"""The package version, in one place (read by hatchling and ``__init__``)."""

__version__ = "0.1.0"
