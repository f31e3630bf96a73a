"""Errors that end a run, by kind: each maps to one exit code of `sendit`."""


class ConfigError(Exception):
    """Bad usage or configuration: the run cannot start (exit code 2)."""
