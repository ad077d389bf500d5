"""Run `archc train` as one torchrun worker, with a run directory of its own per rank, so a
test can see that every rank other than 0 writes nothing at all.

    python -m torch.distributed.run --nproc_per_node 2 ddp_driver.py OUT SPEC [train flags]
"""
import os
import sys

from archcompiler.cli.main import main

if __name__ == "__main__":
    out, rest = sys.argv[1], sys.argv[2:]
    sys.exit(main(["train", *rest, "--out", os.path.join(out, f"rank{os.environ['RANK']}")]))
