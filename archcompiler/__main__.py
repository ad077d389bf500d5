"""`python -m archcompiler ...` is the same as `archc ...` (and what torchrun launches)."""
from archcompiler.cli.main import entry

if __name__ == "__main__":
    entry()
