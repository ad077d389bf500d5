"""The `archc` command: one dispatcher, and the one place that turns errors into exit codes.

Each subcommand lives in its own module with a `main(argv) -> int`. Commands that need a
compiled spec (train, eval, bench) live here and hand plain nn.Modules to `runtime/`, which
knows nothing of specs; commands that need no spec (data, compare) live in `runtime/`. A module reports bad
input by raising an exception with an `exit_code` attribute (1 for bad input, 2 for a bad
command line); `entry` prints its message, never a traceback. Heavy imports (torch)
happen inside those modules, so `archc check` stays fast.
"""
from __future__ import annotations

import errno
import importlib
import os
import sys

# subcommand -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("archcompiler.cli.check", "validate specs and print the layer table"),
    "schema": ("archcompiler.cli.schema", "print the JSON Schema of the spec language"),
    "blocks": ("archcompiler.cli.blocks", "list the registered block types"),
    "render": ("archcompiler.cli.render", "draw a spec or a block with graphviz"),
    "emit": ("archcompiler.cli.emit", "write standalone PyTorch source for a spec"),
    "export": ("archcompiler.cli.export", "export a spec to ONNX"),
    "train": ("archcompiler.cli.train", "train a spec (the paper's recipe by default)"),
    "eval": ("archcompiler.cli.evaluate", "evaluate a checkpoint: loss, top-1, top-5"),
    "predict": ("archcompiler.cli.predict", "classify images with a trained checkpoint"),
    "compare": ("runtime.train.compare", "compare training runs side by side"),
    "bench": ("archcompiler.cli.bench", "benchmark throughput, latency, memory and MFU"),
    "data": ("runtime.data.cli", "inspect, prepare and download datasets"),
}

USAGE = "usage: archc <command> [options]\n\ncommands:\n" + "\n".join(
    f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()
) + "\n\nRun 'archc <command> --help' for a command's options.\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from archcompiler import __version__

        print(f"archc {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    for arg in rest:  # paths are recorded in UTF-8 JSON (config.json, caches): refuse one that is not, before any work
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            sys.stderr.write(f"archc {name}: error: {os.fsencode(arg)!r} is not UTF-8 text; rename the file or folder it names\n")
            return 2
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        sys.stderr.write(f"archc: error: unknown command '{name}'{hint}\n\n{USAGE}")
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)


def entry() -> None:
    """Console-script entry: no traceback ever reaches the user for a known kind of error."""
    # Started with stdout closed, writing the results is an error, not a crash; and a write to
    # stdout that fails (a full disk behind it) must be told from one to a file.
    sys.stdout = _Watched(_Closed() if sys.stdout is None else sys.stdout)
    _terminate_as_interrupt()
    try:
        code = main()
        sys.stdout.flush()  # a full disk or device behind stdout shows here, not after exit
    except KeyboardInterrupt:
        _ignore_interrupts()
        _tell("archc: interrupted\n")
        code = 130
    except BrokenPipeError:  # the reader left before the output was complete (`| head`): the output is cut short
        _quiet_stdout()
        code = 1
    except Exception as e:  # noqa: BLE001 - the one place errors become exit codes
        # Errors meant for users carry an `exit_code` (archcompiler.errors, runtime.errors);
        # the two packages stay independent of each other by agreeing on that attribute only.
        code = getattr(e, "exit_code", None)
        missing = _missing_dependency(e) if isinstance(e, ModuleNotFoundError) else None
        if missing is not None and not os.environ.get("ARCHC_DEBUG"):
            _tell(f"archc: error: {missing}\n")  # the environment, not archc, lacks it
            code = 1
        elif isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS and not os.environ.get("ARCHC_DEBUG"):
            _tell(f"archc: error: {_where(e)}\n")  # a full disk, a closed or read-only output
            _quiet_stdout()
            code = 1
        elif code is None and _INTERRUPTED:  # the interrupt surfaced as another error (torch.export wraps it, or a half-done import)
            _ignore_interrupts()
            _tell("archc: interrupted\n")
            code = 130
        elif code is None:
            if os.environ.get("ARCHC_DEBUG"):
                raise
            _tell(
                f"archc: internal error: {type(e).__name__}: {e}\n"
                "This is a bug in archc. Set ARCHC_DEBUG=1 to see the traceback.\n"
            )
            code = 70
        else:
            if code == 130:  # a stop the user asked for, and saved: not an error
                _ignore_interrupts()
            _tell(f"archc: {e}\n" if code == 130 else f"archc: error: {e}\n")
    sys.exit(code)


# Write failures that the machine causes, not archc: a full disk or quota, a device error, a
# read-only file system or folder, a closed output. Any other OSError reaching entry() is a bug.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EBADF, errno.EFBIG, errno.EACCES, errno.EPERM}


class _Closed:
    """stdout when the process started with it closed: any write fails as a closed file does."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "it is closed")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class _Watched:
    """sys.stdout, remembering whether a write to it failed; everything else is the stream's."""

    def __init__(self, stream) -> None:
        self._stream, self.failed = stream, False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            self.failed = True
            raise

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            self.failed = True
            raise

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _tell(text: str) -> None:
    """Write an exit message to stderr; a closed stderr (`2>&1 | head`) must not turn the exit
    code the message goes with into a crash, or into 0."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):  # closed: the exit code still says what happened
        pass


def _where(e: OSError) -> str:
    """What failed: the file the error names, else standard output if a write to it failed,
    else a write whose file Python did not record."""
    if e.filename is not None:
        return f"{e.filename}: {e.strerror}"
    if getattr(sys.stdout, "failed", False):
        return f"standard output: {e.strerror}"
    return f"{e.strerror} (while writing a file)"


def _quiet_stdout() -> None:
    """After a failed write to stdout, the interpreter's own flush at exit would fail again and
    print 'Exception ignored': point stdout at nothing."""
    from runtime.files import to_nothing

    if not to_nothing("stdout"):
        sys.stdout = _Closed()


# Import names whose distribution is named otherwise, for the install hint.
DISTRIBUTIONS = {"yaml": "pyyaml", "PIL": "pillow", "google": "protobuf"}


def _missing_dependency(e: ModuleNotFoundError) -> str | None:
    """A message for a third-party package this environment lacks; None for one of archc's
    own modules (which is a bug, reported as such)."""
    top = (e.name or "").split(".")[0]
    if not top or top in ("archcompiler", "runtime", "bench", "tests"):
        return None
    package = DISTRIBUTIONS.get(top, top)
    return (f"this needs the Python package '{package}', which is not installed in {sys.prefix} "
            f"(`make setup` installs everything archc uses; or: python -m pip install {package})")


_INTERRUPTED = False  # set by the first Ctrl-C or SIGTERM: whatever error follows, the run was interrupted


def _terminate_as_interrupt() -> None:
    """SIGTERM (a scheduler, `kill`) is Ctrl-C: one line and exit 130 wherever it lands, while a
    dataset decodes as well as in training (whose loop turns both into a checkpoint and a stop),
    instead of a silent end with 143. Either is remembered, so that an interrupt that a library
    turns into an error of its own (torch.export wraps it) is still told as one, not as a bug.
    A handler someone else installed is left alone."""
    import signal

    def interrupt(signum, frame):
        global _INTERRUPTED
        _INTERRUPTED = True
        raise KeyboardInterrupt

    for sig, default in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)):
        if signal.getsignal(sig) == default:
            signal.signal(sig, interrupt)


def _ignore_interrupts() -> None:
    """Stopping on Ctrl-C is decided and reported: a further press during the interpreter's
    shutdown would only print a traceback from some finalizer."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
