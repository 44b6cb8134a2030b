"""Benchmarks of runcomfy-async against the emulator; see README."""
