"""A U-Net written by hand in plain PyTorch, the way most repositories write it (padded convs
with batch norm, transposed-conv upsampling, the skip concatenated first), as the reference
for specs/examples/unet.yaml. Nothing here comes from archc."""
from __future__ import annotations

import torch
from torch import nn


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class Up(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = double_conv(cin, cout)  # cin // 2 from below plus cin // 2 from the skip

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    def __init__(self, in_channels: int = 1, classes: int = 2, base: int = 32):
        super().__init__()
        widths = [base * 2**i for i in range(5)]  # 32, 64, 128, 256, 512
        self.inc = double_conv(in_channels, widths[0])
        self.downs = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), double_conv(a, b)) for a, b in zip(widths, widths[1:]))
        self.ups = nn.ModuleList(Up(a, b) for a, b in zip(widths[::-1], widths[::-1][1:]))
        self.outc = nn.Conv2d(widths[0], classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)
