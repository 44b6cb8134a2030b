"""The runcomfy-async test suite."""
