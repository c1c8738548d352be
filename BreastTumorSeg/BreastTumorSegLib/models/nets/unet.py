"""3D U-Net after Hirsch et al. 2022 (``UNet_v4``), adapted for whole-volume inference.

Kept from the paper: four resolution levels, 3×3×3 convolutions with BatchNorm + ReLU,
average-pool down-sampling, and up-sampling by a *fixed* (not learned) trilinear
interpolation — the paper froze its transposed convolutions to bilinear weights.
Changed: "same" padding instead of valid convolutions, so one forward pass covers a whole
volume and the output grid equals the input grid; pooling with kernel 2 (not 3) so that tiles
whose offsets are multiples of 2**(levels-1) reproduce a whole-volume pass exactly
(see :mod:`BreastTumorSegLib.models.inference`). Output: one logit channel (tumor).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
        )


class UNet3D(nn.Module):
    def __init__(self, in_channels: int = 3, out_channels: int = 1, base: int = 16, levels: int = 4,
                 max_channels: int = 128):
        super().__init__()
        chans = [min(base * 2 ** i, max_channels) for i in range(levels)]
        self.levels = levels
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans:
            self.down.append(ConvBlock(cin, c))
            cin = c
        self.up = nn.ModuleList()
        for i in range(levels - 2, -1, -1):
            self.up.append(ConvBlock(chans[i + 1] + chans[i], chans[i]))
        self.head = nn.Conv3d(chans[0], out_channels, 1)

    @property
    def divisor(self) -> int:
        """Spatial sizes and tile offsets must be multiples of this."""
        return 2 ** (self.levels - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.avg_pool3d(x, 2)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            x = F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)
            x = block(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
