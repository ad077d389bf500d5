"""BatchLoader: what a trainer relies on. Same seed and epoch give the same batches (also when
resumed mid-epoch), ranks share an epoch as DistributedSampler shares it, augmentation does
what it says, and pixels come out as (x / 255 - mean) / std."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data.distributed import DistributedSampler

from runtime.data import Augment, BatchLoader
from runtime.data.loader import flip_and_crop
from runtime.errors import RuntimeUsageError


def dataset(n: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=gen), torch.arange(n)


def epoch_labels(loader: BatchLoader, epoch: int) -> list[int]:
    loader.set_epoch(epoch)
    return [label for _, y in loader for label in y.tolist()]


@pytest.mark.parametrize("n, world_size, shuffle", [(50, 1, True), (50, 3, True), (7, 4, True), (50, 3, False)])
@pytest.mark.parametrize("epoch", [0, 5])
def test_each_rank_visits_exactly_what_distributed_sampler_gives_it(n, world_size, shuffle, epoch):
    images, labels = dataset(n)
    for rank in range(world_size):
        loader = BatchLoader(images, labels, batch_size=4, shuffle=shuffle, seed=11, rank=rank, world_size=world_size)
        sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=11)
        sampler.set_epoch(epoch)
        assert epoch_labels(loader, epoch) == list(sampler)


def test_ranks_draw_distinct_shards_that_cover_the_epoch():
    images, labels = dataset(48)
    shards = [set(epoch_labels(BatchLoader(images, labels, batch_size=5, seed=1, rank=r, world_size=4), 2)) for r in range(4)]
    assert all(not (a & b) for i, a in enumerate(shards) for b in shards[i + 1:])
    assert set().union(*shards) == set(range(48))


def test_shuffle_is_reproducible_per_epoch_and_differs_between_epochs_and_seeds():
    images, labels = dataset()
    a = BatchLoader(images, labels, batch_size=8, seed=3)
    b = BatchLoader(images, labels, batch_size=8, seed=3)
    assert epoch_labels(a, 1) == epoch_labels(b, 1)
    assert sorted(epoch_labels(a, 1)) == list(range(50))
    assert epoch_labels(a, 1) != epoch_labels(a, 2)
    assert epoch_labels(a, 1) != epoch_labels(BatchLoader(images, labels, batch_size=8, seed=4), 1)


def test_resuming_mid_epoch_gives_the_same_batches_bit_for_bit():
    images, labels = dataset()
    augment = Augment(flip=True, crop_padding=4)
    full = list(BatchLoader(images, labels, batch_size=8, seed=5, augment=augment).batches(3))
    resumed = list(BatchLoader(images, labels, batch_size=8, seed=5, augment=augment).batches(3, start=4))
    assert len(resumed) == len(full) - 4
    for (x0, y0), (x1, y1) in zip(full[4:], resumed):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)


def test_an_iterator_keeps_the_epoch_it_was_made_for():
    images, labels = dataset()
    loader = BatchLoader(images, labels, batch_size=8, seed=5, augment=Augment(flip=True, crop_padding=4))
    expected = [x for x, _ in BatchLoader(images, labels, batch_size=8, seed=5, augment=Augment(flip=True, crop_padding=4)).batches(1)]
    first = loader.batches(1)
    loader.set_epoch(2)  # e.g. a trainer preparing the next epoch before this one is drained
    assert all(torch.equal(x, e) for (x, _), e in zip(first, expected))


def test_batch_count_and_drop_last():
    images, labels = dataset(50)
    assert len(BatchLoader(images, labels, batch_size=8)) == 7
    dropping = BatchLoader(images, labels, batch_size=8, drop_last=True)
    assert len(dropping) == 6 and [len(y) for _, y in dropping] == [8] * 6
    assert len(BatchLoader(images, labels, batch_size=8, rank=1, world_size=3)) == 3  # 17 samples per rank


def test_batches_are_normalised_by_mean_and_optional_std():
    images, labels = dataset(16)
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.3])
    expected = images.float() / 255
    x, y = next(iter(BatchLoader(images, labels, batch_size=16, shuffle=False, mean=mean)))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (16, 3, 64, 64)
    assert torch.allclose(x, expected - mean.view(1, 3, 1, 1), atol=1e-6)
    x, _ = next(iter(BatchLoader(images, labels, batch_size=16, shuffle=False, mean=mean, std=std)))
    assert torch.allclose(x, (expected - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1), atol=1e-5)


def test_no_augmentation_by_default_and_augmentation_varies_per_epoch():
    images, labels = dataset(32)
    plain = BatchLoader(images, labels, batch_size=32, shuffle=False)
    x, _ = next(iter(plain))
    assert torch.equal((x * 255).round().to(torch.uint8), images)
    flipping = BatchLoader(images, labels, batch_size=32, shuffle=False, augment=Augment(flip=True))
    e0, e1 = (next(flipping.batches(e))[0] for e in (0, 1))
    flipped0 = [not torch.equal(a, b) for a, b in zip(e0, x)]
    assert 4 < sum(flipped0) < 28  # about half the images, not all, not none
    assert not torch.equal(e0, e1)
    for out, original, was_flipped in zip(e0, x, flipped0):
        assert torch.equal(out, original.flip(2) if was_flipped else original)


def reference_flip_and_crop(x, flip, offsets, pad):
    padded = F.pad(x, (pad, pad, pad, pad))
    out = []
    for i in range(x.shape[0]):
        image = padded[i].flip(2) if flip is not None and flip[i] else padded[i]
        top, left = offsets[0, i], offsets[1, i]
        out.append(image[:, top:top + x.shape[2], left:left + x.shape[3]])
    return torch.stack(out)


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 6), h=st.integers(1, 9), w=st.integers(1, 9), pad=st.integers(0, 4), flip=st.booleans(),
       spare=st.one_of(st.none(), st.integers(0, 3)), seed=st.integers(0, 2**16))
def test_flip_and_crop_matches_a_per_image_reference(b, h, w, pad, flip, spare, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=gen)
    flips = torch.randint(0, 2, (b,), generator=gen).bool() if flip else None
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=gen)
    scratch = None
    if spare is not None:  # a loader's reused scratch: room for a bigger batch, stale interior
        rows = 2 * (b + spare)
        scratch = torch.zeros((rows, 3, h + 2 * pad, w + 2 * pad), dtype=torch.uint8)
        scratch[:, :, pad:pad + h, pad:pad + w] = torch.randint(0, 256, (rows, 3, h, w), dtype=torch.uint8, generator=gen)
    out = flip_and_crop(x, flip=flips, offsets=offsets, pad=pad, scratch=scratch)
    assert torch.equal(out, reference_flip_and_crop(x, flips, offsets, pad))


def test_crop_shifts_content_and_pads_with_zeros():
    images = torch.full((64, 3, 64, 64), 200, dtype=torch.uint8)
    loader = BatchLoader(images, torch.zeros(64, dtype=torch.int64), batch_size=64, augment=Augment(crop_padding=4))
    x, _ = next(iter(loader))
    raw = x * 255  # back to pixel levels
    assert raw.min() == 0 and raw.max() == pytest.approx(200)  # zero border on shifted images
    assert ((raw == 0).sum(dim=(1, 2, 3)) <= 3 * (64 * 8 + 8 * 64)).all()  # at most 4 px off each axis


@pytest.mark.parametrize("text, expected", [
    ("none", Augment()), ("flip", Augment(flip=True)), ("crop", Augment(crop_padding=4)),
    ("flip,crop=6", Augment(flip=True, crop_padding=6)), ("", Augment()),
])
def test_augment_parse(text, expected):
    assert Augment.parse(text) == expected


@pytest.mark.parametrize("text", ["rotate", "crop=-1", "flip=2", "crop=x"])
def test_augment_parse_rejects_unknown_names_as_usage_errors(text):
    with pytest.raises(RuntimeUsageError, match="unknown augmentation"):
        Augment.parse(text)


def test_bad_rank_is_a_usage_error():
    images, labels = dataset(4)
    with pytest.raises(RuntimeUsageError, match="rank 2 is outside world size 2"):
        BatchLoader(images, labels, batch_size=2, rank=2, world_size=2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_live_on_the_gpu_and_match_cpu_batches():
    images, labels = dataset(40)
    kw = dict(batch_size=8, seed=2, augment=Augment(flip=True, crop_padding=4), mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2])
    cpu = list(BatchLoader(images, labels, **kw).batches(1))
    gpu = list(BatchLoader(images, labels, device="cuda", **kw).batches(1))
    assert gpu[0][0].device.type == "cuda"
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert torch.equal(yc, yg.cpu()) and torch.allclose(xc, xg.cpu(), atol=1e-6)


DDP_WORKER = """
import json, os, sys
import torch
import torch.distributed as dist
from runtime.data import BatchLoader

dist.init_process_group("gloo")
images = torch.zeros((50, 3, 64, 64), dtype=torch.uint8)
loader = BatchLoader(images, torch.arange(50), batch_size=4, seed=3)  # rank and world size from torchrun
seen = [label for _, y in loader.batches(1) for label in y.tolist()]
with open(os.path.join(sys.argv[1], f"rank{dist.get_rank()}.json"), "w") as f:
    json.dump({"rank": loader.rank, "world_size": loader.world_size, "seen": seen}, f)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_under_torchrun_each_rank_draws_its_own_shard(tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path)],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)]
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"])
    assert set(ranks[0]["seen"]) | set(ranks[1]["seen"]) == set(range(50))
    for r in ranks:
        sampler = DistributedSampler(range(50), num_replicas=2, rank=r["rank"], shuffle=True, seed=3)
        sampler.set_epoch(1)
        assert r["seen"] == list(sampler)
