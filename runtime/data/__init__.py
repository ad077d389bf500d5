"""Datasets for the runtime: Tiny ImageNet, ImageFolder trees and a built-in synthetic set.

    train, val = load_dataset("tiny-imagenet:/data/tiny-imagenet-200")   # or "synthetic"
    loader = BatchLoader(train.images, train.labels, batch_size=32, device="cuda",
                         mean=train.channel_mean(), augment=Augment(flip=True))
    loader.set_epoch(epoch)
    for x, y in loader: ...        # x float32 (B, 3, 64, 64) on the device, y int64 (B,)

Pipeline: layout.py lists files -> decode.py decodes them in parallel -> cache.py keeps the
uint8 tensor on disk -> loader.py batches, augments and normalises on the device.
README.md in this folder states the policies (layouts, errors, resizing, preprocessing).
"""
from runtime.data.imageset import ImageSet
from runtime.data.load import load_dataset, parse_spec
from runtime.data.loader import Augment, BatchLoader
from runtime.data.synthetic import SyntheticConfig

__all__ = ["Augment", "BatchLoader", "ImageSet", "SyntheticConfig", "load_dataset", "parse_spec"]
