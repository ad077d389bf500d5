"""Errors meant for users. The CLI prints their message and exits with `exit_code`."""


class ArchcError(Exception):
    """Bad input that is the user's to fix: exit code 1."""

    exit_code = 1


class UsageError(ArchcError):
    """A bad command line: exit code 2."""

    exit_code = 2
