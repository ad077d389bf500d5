"""argparse `type=` functions that check a number's range as the command line is parsed.

A value out of range is then a usage message from argparse (exit 2) naming the flag, instead
of an overflow deep inside torch minutes later. Shared by every subcommand's parser.
"""
from __future__ import annotations

import argparse
import math
import re

SEED_MAX = 2**32 - 1  # numpy's and most libraries' seed range; torch adds epoch and rank to it
COUNT_MAX = 2**31 - 1  # epochs, steps, batch sizes: far beyond any real run, still a C int


def int_range(low: int, high: int = COUNT_MAX):
    """An integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"wants an integer, not '{text}'") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"wants an integer from {low} to {high:,}, not {text}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def positive_float(text: str) -> float:
    """A finite number above zero (a learning rate, a fraction)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number, not '{text}'") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"wants a finite number above 0, not {text}")
    return value


positive_float.__name__ = "number"
seed = int_range(0, SEED_MAX)
positive = int_range(1)
non_negative = int_range(0)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the usage block buries the one line that says what is
    wrong, and `--help` is one flag away. Flags are never abbreviated: `--epoch 3` is an
    error, not `--epochs 3`, so a flag added later cannot change what an old command means."""

    # argparse takes "-1e-3", "-inf" and "-.5e2" for flags ("--lr: expected one argument"), as it
    # knows only "-1" and "-1.5" for numbers; no flag here starts with a digit, "inf" or "nan", so
    # these are values, and the flag's own type says what is wrong with them.
    NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = self.NEGATIVE_NUMBER

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):
        """Also refuses an empty argument: `--out ''` (an unset shell variable) would otherwise
        mean the current folder, or the default, and `--init-from ''` nothing at all."""
        import sys

        argv = sys.argv[1:] if args is None else list(args)
        for i, arg in enumerate(argv):
            if arg == "--":
                break
            if not arg.strip() or (arg.startswith("--") and arg.endswith("=")):
                after = arg[:-1] if arg.strip() else (argv[i - 1] if i and argv[i - 1].startswith("-") else None)
                self.error(f"{after}: empty value" if after else "an empty argument ('') is never a valid value")
        return super().parse_args(argv, namespace)


IMAGE_SIDE_MAX = 16384  # the decoder's pixel limit, 2^28, is 16384 x 16384


def image_size(text: str) -> tuple[int, int]:
    """'WxH' (width x height, as image sizes are written) or 'N' for NxN; returns (height, width)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() and p.isascii() for p in parts):
        raise argparse.ArgumentTypeError(f"wants a size such as 224 or 320x240 (width x height), not '{text}'")
    sides = [int(p) for p in parts]
    if not all(1 <= side <= IMAGE_SIDE_MAX for side in sides):
        raise argparse.ArgumentTypeError(f"wants sides from 1 to {IMAGE_SIDE_MAX}, not '{text}'")
    width, height = sides if len(sides) == 2 else sides * 2
    return height, width
