"""The paper's four models, written by hand in plain PyTorch, independently of archc.

These are the references the compiler is checked against: parameter counts, outputs and
gradients. Submodules are registered in the same order as the spec's nodes, so weights can
be copied across by state_dict order. The reading of the paper's open points is the one in
paper-facts.md: every conv outside pre-activation residuals (and the stem) is followed by
batch norm and ReLU; reductions are unpadded; the residual inception's 1x1 projection is a
plain conv with bias.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, pad: int = 0) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class PreActResidual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x):
        h = self.conv1(F.relu(self.bn1(x)))
        h = self.conv2(F.relu(self.bn2(h)))
        return x + h


class Reduction(nn.Module):
    def __init__(self, cin: int, a: int, b: int):
        super().__init__()
        self.single = conv_bn_relu(cin, a, 3, stride=2)
        self.double1 = conv_bn_relu(cin, b, 3, pad=1)
        self.double2 = conv_bn_relu(b, b, 3, stride=2)

    def forward(self, x):
        pooled = F.max_pool2d(x, 3, 2)
        return F.relu(torch.cat([pooled, self.single(x), self.double2(self.double1(x))], 1))


class SoftAttention(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.trunk_a = PreActResidual(c)
        self.trunk_b = PreActResidual(c)
        self.mask_a = PreActResidual(c)
        self.mask_b = PreActResidual(c)

    def forward(self, x):
        t = self.trunk_b(self.trunk_a(x))
        m = self.mask_a(F.avg_pool2d(x, 2))
        m = self.mask_b(F.avg_pool2d(m, 2))
        m = torch.sigmoid(F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return (1 + m) * t


class ResidualInception(nn.Module):
    def __init__(self, c: int, r: int):
        super().__init__()
        self.b1 = conv_bn_relu(c, r, 1)
        self.b2a = conv_bn_relu(c, r, 1)
        self.b2b = conv_bn_relu(r, r, 3, pad=1)
        self.b3a = conv_bn_relu(c, r, 1)
        self.b3b = conv_bn_relu(r, r, 3, pad=1)
        self.b3c = conv_bn_relu(r, r, 3, pad=1)
        self.up = nn.Conv2d(3 * r, c, 1)

    def forward(self, x):
        h = torch.cat([self.b1(x), self.b2b(self.b2a(x)), self.b3c(self.b3b(self.b3a(x)))], 1)
        return F.relu(x + self.up(h))


class PaperNet(nn.Module):
    """attention: soft attention after the stem; full: residual inception and a third
    reduction; extra_head: the two-layer classifier of section 5.4."""

    def __init__(self, attention=False, full=False, extra_head=False, classes=200):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, padding=1)
        self.attn = SoftAttention(64) if attention else None
        self.red1 = Reduction(64, 32, 32)
        self.res = PreActResidual(128)
        self.red2 = Reduction(128, 96, 96)
        self.incres = ResidualInception(320, 64) if full else None
        self.red3 = Reduction(320, 256, 256) if full else None
        width = 832 if full else 320
        self.drop = nn.Dropout(0.4)
        if extra_head:
            self.head = nn.Sequential(nn.Linear(width, 1024), nn.ReLU(), nn.Dropout(0.4), nn.Linear(1024, classes))
        else:
            self.head = nn.Linear(width, classes)

    def forward(self, x):
        x = self.stem(x)
        if self.attn is not None:
            x = self.attn(x)
        x = self.red2(self.res(self.red1(x)))
        if self.red3 is not None:
            x = self.red3(self.incres(x))
        x = self.drop(x.mean(dim=(2, 3)))
        return self.head(x)


def reference(name: str) -> nn.Module:
    return {
        "no_attention": lambda: PaperNet(),
        "attn_simple": lambda: PaperNet(attention=True),
        "attn_reduction": lambda: PaperNet(attention=True, full=True),
        "no_attention_extra": lambda: PaperNet(extra_head=True),
    }[name]()


def copy_by_order(src: nn.Module, dst: nn.Module) -> None:
    """Copy every parameter and buffer of `src` into `dst`, matched by state_dict order."""
    a, b = list(src.state_dict().items()), list(dst.state_dict().items())
    assert len(a) == len(b), (len(a), len(b))
    for (ka, va), (kb, vb) in zip(a, b):
        assert va.shape == vb.shape, (ka, kb, va.shape, vb.shape)
    dst.load_state_dict({kb: va.clone() for (_, va), (kb, _) in zip(a, b)})
