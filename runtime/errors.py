"""Errors meant for users of the runtime. The CLI prints the message and exits with `exit_code`.

Defined here rather than imported from the compiler: the runtime trains any `nn.Module` and
does not depend on `archcompiler`. The CLI only relies on the `exit_code` attribute.
"""


class RuntimeUserError(Exception):
    """Bad data, a bad checkpoint, a bad option value: exit code 1."""

    exit_code = 1


class DataError(RuntimeUserError):
    """A dataset that cannot be read: a missing or corrupt file, a bad layout."""


class CheckpointError(RuntimeUserError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


class RuntimeUsageError(RuntimeUserError):
    """A bad command-line value: exit code 2."""

    exit_code = 2
