"""`make gpu-pack`: everything a GPU job needs that the GPU machine lacks, in gpu-pack/ (ignored).

    python bench/gpu/pack.py [--data DIR] [--out gpu-pack] [--part-mib 55] [--drop-class WNID ...] [--no-wheels]

- gpu-pack/wheels/: the wheels of bench/gpu/requirements.txt for CPython 3.12 manylinux
  x86-64 (the machine has no network; bench/gpu/run.sh installs them with --no-index).
- gpu-pack/part1/ ... partN/: the Tiny ImageNet tree at DIR, in parts of at most --part-mib
  MiB (the full set: three of about 48 MiB), each a gzipped tar of whole files (so each part unpacks on its own), with the same
  manifest.json beside each (every part's size, SHA-256 and file count), so that a job that
  carries one part knows the whole set and can say which parts are still missing.

Only what training reads is packed: wnids.txt, words.txt (its lines for these classes),
val/val_annotations.txt and the images they name; test/ and the bounding-box files stay
behind. `--drop-class` leaves a class out (a copy with extra classes appended, such as the one
in docs: ../shared/docs/paper-facts.md). The tars are deterministic (sorted names, fixed
mtimes and owners, gzip with no timestamp), so packing the same tree twice gives the same
checksums on any machine.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MTIME = 946684800  # 2000-01-01: a fixed time, so the cache fingerprint and the tar bytes never depend on when we packed
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")


def default_data() -> Path:
    """$ARCHC_TINY_IMAGENET, else the shared sample beside the checkout (a rehearsal set)."""
    env = os.environ.get("ARCHC_TINY_IMAGENET")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "tiny-imagenet-sample"


def members(root: Path, drop: set[str]) -> tuple[list[tuple[str, bytes | None]], dict]:
    """(relative path, bytes for rewritten text files or None) of everything to pack, and counts."""
    wnids = [w.strip() for w in (root / "wnids.txt").read_text().splitlines() if w.strip()]
    unknown = drop - set(wnids)
    if unknown:
        raise SystemExit(f"gpu-pack: --drop-class {', '.join(sorted(unknown))}: not in {root / 'wnids.txt'}")
    classes = [w for w in wnids if w not in drop]
    keep = set(classes)
    out: list[tuple[str, bytes | None]] = [("wnids.txt", "".join(f"{w}\n" for w in classes).encode())]
    words = root / "words.txt"
    if words.exists():
        lines = [ln for ln in words.read_text().splitlines() if ln.split("\t", 1)[0] in keep]
        out.append(("words.txt", "".join(f"{ln}\n" for ln in lines).encode()))
    ann = [ln for ln in (root / "val" / "val_annotations.txt").read_text().splitlines() if ln.strip()]
    ann = [ln for ln in ann if ln.split("\t")[1] in keep]
    out.append(("val/val_annotations.txt", "".join(f"{ln}\n" for ln in ann).encode()))
    train = 0
    for w in classes:
        for f in sorted((root / "train" / w / "images").iterdir()):
            out.append((f"train/{w}/images/{f.name}", None))
            train += 1
    for ln in ann:
        out.append((f"val/images/{ln.split(chr(9))[0]}", None))
    return out, {"classes": len(classes), "train": train, "val": len(ann)}


def compressed_costs(items: list[tuple[str, bytes | None]], root: Path) -> list[int]:
    """What each file adds to a gzipped tar, about. Tiny ImageNet's JPEGs share their headers, so
    gzip shrinks them by about a third, and by how much depends on the neighbours: this
    compresses the whole stream once and charges each file with the bytes the compressor emitted
    after it (exact over megabytes)."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    costs = []
    for rel, data in items:
        body = data if data is not None else (root / rel).read_bytes()
        costs.append(len(comp.compress(bytes(512) + body)))  # 512: about a tar header's share
    costs[-1] += len(comp.flush())
    return costs


def split(items: list, costs: list[int], part_bytes: float) -> list[list]:
    """Consecutive runs of `items` of about equal cost, as few as keep each under `part_bytes`."""
    count = max(1, -(-sum(costs) // int(part_bytes)))
    target = sum(costs) / count
    parts, current, acc = [], [], 0
    for item, cost in zip(items, costs):
        if current and acc + cost > target * (len(parts) + 1) and len(parts) < count - 1:
            parts.append(current)
            current = []
        current.append(item)
        acc += cost
    return parts + [current]


def write_part(path: Path, items: list[tuple[str, bytes | None]], root: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for rel, data in sorted(items):
            body = data if data is not None else (root / rel).read_bytes()
            info = tarfile.TarInfo(f"tiny-imagenet-200/{rel}")
            info.size, info.mtime, info.mode, info.uid, info.gid = len(body), MTIME, 0o644, 0, 0
            tar.addfile(info, io.BytesIO(body))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    tmp.replace(path)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pack_data(root: Path, out: Path, part_mib: float, drop: set[str]) -> dict:
    if not (root / "wnids.txt").is_file() or not (root / "val" / "val_annotations.txt").is_file():
        raise SystemExit(f"gpu-pack: {root} is not a Tiny ImageNet tree (no wnids.txt or val/val_annotations.txt); "
                         "pass TINY_IMAGENET=DIR (make) or --data DIR")
    items, counts = members(root, drop)
    limit = int(part_mib * 2**20)
    for old in out.glob("part*"):  # a previous pack's parts must not mix with this one's
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    costs = compressed_costs(items, root)
    budget = limit * 0.97  # room for tar's and gzip's framing, which the estimate leaves out
    while True:  # the estimate is close, not exact: pack, and pack into smaller parts if one came out too big
        parts = []
        for k, chunk in enumerate(split(items, costs, budget), start=1):
            folder = out / f"part{k}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"tiny-imagenet.part{k}.tar.gz"
            write_part(path, chunk, root)
            parts.append({"part": k, "file": f"part{k}/{path.name}", "bytes": path.stat().st_size, "sha256": sha256(path), "files": len(chunk)})
        if all(p["bytes"] <= limit for p in parts):
            break
        for old in out.glob("part*/*.tar.gz"):
            old.unlink()
        budget *= 0.9
    for p in parts:
        print(f"gpu-pack: part {p['part']}: {p['files']} files, {p['bytes'] / 2**20:.1f} MiB", file=sys.stderr)
    manifest = {"dataset": "tiny-imagenet-200", "source": str(root), "dropped_classes": sorted(drop), **counts,
                "pack_id": hashlib.sha256("".join(p["sha256"] for p in parts).encode()).hexdigest()[:16], "parts": parts}
    text = json.dumps(manifest, indent=1) + "\n"
    for k in range(1, len(parts) + 1):
        (out / f"part{k}" / "manifest.json").write_text(text)
    (out / "manifest.json").write_text(text)
    return manifest


def pack_wheels(out: Path, requirements: Path) -> list[str]:
    """pip download of each pinned requirement, for the GPU machine's Python (3.12, x86-64)."""
    names = [ln.split("#")[0].strip() for ln in requirements.read_text().splitlines()]
    names = [n for n in names if n]
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for old in wheels.glob("*.whl"):
        old.unlink()
    platform_args = [a for p in PLATFORMS for a in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", *platform_args, "-d", str(wheels), *names]
    if subprocess.call(cmd) != 0:
        raise SystemExit("gpu-pack: pip download failed (above); PyPI must be reachable from this machine")
    return sorted(p.name for p in wheels.glob("*.whl"))


def tree_bytes() -> int | None:
    """What the device tool sends besides the carried folders: tracked and untracked-not-ignored files."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return sum((ROOT / f).stat().st_size for f in out.decode().split("\0") if f and (ROOT / f).is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/gpu/pack.py", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="Tiny ImageNet tree (default $ARCHC_TINY_IMAGENET, else the shared sample)")
    p.add_argument("--out", type=Path, default=ROOT / "gpu-pack", help="where the pack goes (default gpu-pack/, ignored by git)")
    p.add_argument("--part-mib", type=float, default=55.0, help="largest part in MiB (default 55: a job carries at most 64 MiB in all)")
    p.add_argument("--drop-class", action="append", default=[], metavar="WNID", help="leave this class out (repeatable)")
    p.add_argument("--no-wheels", dest="wheels", action="store_false", help="pack the data only")
    p.add_argument("--no-data", dest="data_on", action="store_false", help="pack the wheels only")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"out": str(args.out)}
    if args.wheels:
        summary["wheels"] = pack_wheels(args.out, HERE / "requirements.txt")
    if args.data_on:
        root = (args.data or default_data()).expanduser()
        m = pack_data(root.resolve(), args.out, args.part_mib, set(args.drop_class))
        summary.update({k: m[k] for k in ("classes", "train", "val", "pack_id")})
        summary["parts"] = [{k: part[k] for k in ("part", "bytes", "sha256")} for part in m["parts"]]
    tree, wheels = tree_bytes(), sum(p.stat().st_size for p in (args.out / "wheels").glob("*.whl"))
    if tree is not None:
        parts = sorted((p.stat().st_size for p in args.out.glob("part*/*.tar.gz")), reverse=True)
        biggest = tree + wheels + (parts[0] if parts else 0)
        summary["largest_job_mib"] = round(biggest / 2**20, 1)
        print(f"gpu-pack: a job carries at most {biggest / 2**20:.1f} MiB (tree {tree / 2**20:.1f}, wheels {wheels / 2**20:.1f}, "
              f"largest part {(parts[0] if parts else 0) / 2**20:.1f}) of the 64 MiB allowed", file=sys.stderr)
        if biggest > 64 * 2**20:
            print("gpu-pack: over 64 MiB: ignore or remove what need not travel (git status --short), or pack smaller parts", file=sys.stderr)
            return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
