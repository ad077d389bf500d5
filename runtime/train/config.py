"""TrainConfig: every training choice in one typed dataclass, and the recipes that fill it.

Precedence, lowest first: the paper recipe's defaults < the spec's `train:` section < the
recipe named by `--recipe` (only when given) < each flag given on the command line. A recipe
named on the command line is itself a flag, so it overrides the spec; without one, the spec's
own recipe runs (the paper's, for the paper specs).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from runtime import vocab
from runtime.errors import RuntimeUsageError

RECIPES = ("paper", "modern")


@dataclass
class TrainConfig:
    recipe: str = "paper"  # which recipe the defaults came from; recorded for the reader of config.json
    epochs: int = 25  # the paper trains for at most 25 epochs
    batch_size: int = 32  # the paper's batch; the global batch, split evenly across DDP ranks
    optimizer: str = "adam"  # the paper uses Adam
    lr: float = 1e-3  # the paper's initial rate
    weight_decay: float = 0.0  # the paper uses none
    momentum: float = vocab.DEFAULT_MOMENTUM  # sgd only; the common choice
    lr_schedule: str = "step"  # the paper's staircase: "step", "cosine" or "constant"
    lr_decay: float = 0.96  # the paper multiplies the rate by 0.96 ...
    lr_decay_every: int = 1000  # ... every 1000 iterations
    warmup_steps: int = 0  # linear warm-up in iterations; the paper has none
    warmup_epochs: float = 0.0  # warm-up in epochs, used when warmup_steps is 0: scales with the data size
    label_smoothing: float = 0.0  # the paper uses plain softmax cross-entropy
    augment_flip: bool = False  # the paper does not augment
    augment_crop_padding: int = 0  # random crop after zero padding; 0 disables it
    normalize_std: bool = False  # the paper subtracts the channel mean only (batchnorm comes early)
    seed: int = 0  # weights, shuffling, dropout and augmentation all follow from it
    data: str = "synthetic"  # the dataset, recorded so --resume and eval find the same one
    num_classes: int | None = None  # outputs of the model's head; None follows the data (recorded resolved)
    device: str = "auto"  # auto picks cuda when present, else cpu
    compile: bool | None = None  # torch.compile; None means on for CUDA, off for CPU (compiling costs more than it saves there)
    compile_mode: str = "default"  # torch.compile's mode; reduce-overhead replays each step as a CUDA graph on CUDA
    amp: str | None = None  # "bf16" or "off"; None means bf16 on CUDA, off on CPU
    channels_last: bool | None = None  # NHWC memory layout; None means the faster layout for the device, as measured (setup.py)
    max_steps: int | None = None  # stop after this many iterations in all (quick runs, tests); the schedule still spans all epochs
    eval_batch_size: int = 256  # validation needs no gradients, so a larger batch is cheaper
    checkpoint_every: int = 0  # also checkpoint every N iterations (long epochs, preemptible jobs); 0 means at epoch ends only
    progress: bool = True  # a live bar when stdout is a terminal; plain lines otherwise
    log_every: str = "30s"  # without a bar, a step line every N steps ("50") or seconds ("30s"); "0" for none
    notes: dict = field(default_factory=dict)  # free-form, copied to config.json (e.g. the spec path)

    def __post_init__(self) -> None:
        checks = [
            (self.recipe in RECIPES, f"recipe must be one of {', '.join(RECIPES)}"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch size must be at least 1"),
            (self.optimizer in vocab.OPTIMIZERS, f"optimizer must be one of {', '.join(vocab.OPTIMIZERS)}"),
            (self.compile_mode in vocab.COMPILE_MODES, f"compile mode must be one of {', '.join(vocab.COMPILE_MODES)}"),
            (self.lr > 0, "learning rate must be positive"),
            (self.lr_schedule in ("step", "cosine", "constant"), "lr schedule must be step, cosine or constant"),
            (0 < self.lr_decay <= 1, "lr decay must be in (0, 1]"),
            (self.lr_decay_every >= 1, "lr decay period must be at least 1 iteration"),
            (self.warmup_steps >= 0 and self.warmup_epochs >= 0, "warm-up must not be negative"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (vocab.valid_device(self.device), "device must be auto, cpu or cuda"),
            (self.amp is None or self.amp in vocab.AMP, f"amp must be {' or '.join(vocab.AMP)}"),
            (self.max_steps is None or self.max_steps >= 1, "max steps must be at least 1"),
            (self.eval_batch_size >= 1, "eval batch size must be at least 1"),
            (self.num_classes is None or self.num_classes >= 1, "number of classes must be at least 1"),
            (self.checkpoint_every >= 0, "checkpoint interval must not be negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise RuntimeUsageError(message)
        from runtime.train.progress import parse_log_every

        parse_log_every(self.log_every)  # a clear error now, not at the first logged step

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def warmup_for(self, steps_per_epoch: int) -> int:
        return self.warmup_steps or round(self.warmup_epochs * steps_per_epoch)


def paper() -> TrainConfig:
    """Section 5 of the paper: Adam 1e-3, x0.96 every 1000 iterations, batch 32, 25 epochs."""
    return TrainConfig()


# What `--recipe modern` changes, and why. Each is a common choice of current small-image
# training (timm, the ConvNeXt and ResNet-strikes-back recipes, scaled down to 64x64 images).
MODERN = {
    "optimizer": "adamw",  # decoupled weight decay regularises without fighting Adam's scaling
    "weight_decay": 0.05,  # the usual AdamW strength for convnets of this size
    "batch_size": 128,  # fewer, larger steps: better accelerator use; the rate is raised to match
    "lr": 2e-3,  # about 1e-3 x sqrt(128 / 32), the square-root scaling rule for Adam
    "lr_schedule": "cosine",  # smooth decay to zero by the last epoch, no period to tune
    "warmup_epochs": 2.0,  # Adam's early steps are noisy at a high rate; scales with the data size
    "label_smoothing": 0.1,  # keeps logits from growing without bound on 200 similar classes
    "augment_flip": True,  # Tiny ImageNet objects have no preferred left or right
    "augment_crop_padding": 4,  # random shifts of up to 4 pixels: translation invariance for free
    "normalize_std": True,  # unit-variance inputs let the larger rate act evenly on all channels
}


# The fields a recipe decides. Naming a recipe on the command line sets all of them, so
# `--recipe paper` really is the paper's recipe whatever the spec says; epochs stay the spec's.
RECIPE_FIELDS = ("optimizer", "weight_decay", "batch_size", "lr", "lr_schedule", "lr_decay", "lr_decay_every",
                 "warmup_steps", "warmup_epochs", "label_smoothing", "augment_flip", "augment_crop_padding", "normalize_std")


def modern() -> TrainConfig:
    return dataclasses.replace(paper(), recipe="modern", **MODERN)


def spec_train_to_fields(train: dict) -> dict:
    """The spec's `train:` mapping (TRAIN_SCHEMA) as TrainConfig field values."""
    fields = {k: v for k, v in train.items() if k != "augment"}
    augment = train.get("augment") or {}
    if "flip" in augment:
        fields["augment_flip"] = augment["flip"]
    if "crop_padding" in augment:
        fields["augment_crop_padding"] = augment["crop_padding"]
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise RuntimeUsageError(f"unknown train: keys {', '.join(unknown)}")
    return fields


def resolve(spec_train: dict | None = None, overrides: dict | None = None, recipe: str | None = None) -> TrainConfig:
    """Merge, lowest first: paper defaults < spec `train:` < `recipe` (if named) < overrides.

    `overrides` holds only the flags the user gave (None values are ignored)."""
    values = paper().to_dict()
    values.update(spec_train_to_fields(spec_train or {}))
    if recipe is not None:
        if recipe not in RECIPES:
            raise RuntimeUsageError(f"unknown recipe '{recipe}'; choose {' or '.join(RECIPES)}")
        chosen = modern() if recipe == "modern" else paper()
        values.update({k: getattr(chosen, k) for k in ("recipe", *RECIPE_FIELDS)})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return TrainConfig.from_dict(values)
