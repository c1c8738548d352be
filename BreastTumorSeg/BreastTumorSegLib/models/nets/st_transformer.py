"""Spatial-temporal transformer for DCE-MRI tumor segmentation, after Zhang et al. 2023.

Zhang et al. encode every post-contrast phase *t* separately with one shared residual CNN
(input: the phase and its subtraction from the pre-contrast, ``[P_t, P_t - P_0]``), let a
spatial and a temporal transformer mix the bottleneck tokens, and decode one tumor map. The
temporal attention masks absent phases, so one network reads exams with 2-8 phases.
Their released network has about 176 M parameters (132 M in two 12-layer ViTs of width 768).

This is a lean version of the same design (about 1-2 M parameters) that trains on a CPU:

* **Encoder** (shared by all phases): residual blocks (two 3x3x3 convolutions, BatchNorm,
  ReLU, 1x1x1 projection on the shortcut), max-pool down-sampling.
* **Bottleneck**: ``depth`` pairs of pre-norm transformer blocks in *divided* space-time
  attention (spatial attention within each phase, then temporal attention across the phases
  at each location). Spatial attention runs in non-overlapping windows of ``window``^3 tokens,
  so a whole-volume pass sees the same context as a training patch and the cost grows
  linearly with the volume. A depth-wise 3x3x3 convolution before each spatial block gives
  positions (no absolute embedding, so any volume size works). Each phase token gets an
  embedding of its acquisition time (minutes after the pre-contrast image).
* **Phase fusion**: the mean over the *present* phases of every skip level and of the
  bottleneck, so absent phases (``phase_mask == False``) contribute nothing anywhere; the
  decoder also gets the skips of the earliest present phase (the wash-in image, where tumors
  stand out most; Zhang et al. decode from the skips of one early phase only).
* **Decoder**: trilinear up-sampling + residual block per level; one logit channel.

Input convention: ``x`` has ``2 * T`` channels ``[P_1, P_1 - P_0, P_2, P_2 - P_0, ...]``
(what :func:`BreastTumorSegLib.preprocess.harmonize.to_model_grid` gives for ``kind="phases"``), T from 1
to ``max_phases``. The network divides the phase and the subtraction channels by two fixed
scales kept as buffers (``input_scale``), so the weights file carries its own normalization.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_INTERVAL_MIN = 1.5  # assumed spacing of the phases when no times are given


class ResBlock(nn.Module):
    """Two 3x3x3 convolutions with BatchNorm and ReLU, plus a (projected) shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.skip = nn.Identity() if cin == cout else nn.Conv3d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.skip(x), inplace=True)


class ConvBlock(nn.Sequential):
    """One 3x3x3 convolution, BatchNorm, ReLU: the light full-resolution level."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: multi-head self-attention + MLP, both residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.dropout = dropout

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, L, dim); key_mask: (N, L) bool, True where a token may be attended to."""
        n, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(y.transpose(1, 2).reshape(n, length, dim))
        return x + self.mlp(self.norm2(x))


def _masked_mean(feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the phase axis of (B, T, C, ...) features, counting only present phases."""
    w = mask.to(feats.dtype).reshape(mask.shape + (1,) * (feats.dim() - 2))
    return (feats * w).sum(1) / w.sum(1).clamp_min(1.0)


class SpatialTemporalNet(nn.Module):
    """Lean spatial-temporal transformer; see the module docstring.

    Parameters
    ----------
    max_phases: largest number of post-contrast phases (7 for an 8-phase exam).
    base, levels, max_channels: encoder widths ``min(base * 2**i, max_channels)``; the
        bottleneck is ``2**(levels-1)`` times coarser than the input.
    dim, heads, depth, mlp_ratio, dropout: the transformer (``depth`` spatial + ``depth``
        temporal blocks of width ``dim``).
    window: spatial attention window, in bottleneck tokens per axis.
    early_skip: also pass the skip features of the earliest present phase to the decoder
        (Zhang et al. decode from the skips of one early phase), next to the phase mean.
    """

    def __init__(self, max_phases: int = 7, base: int = 8, levels: int = 4, max_channels: int = 64,
                 dim: int = 96, heads: int = 4, depth: int = 2, mlp_ratio: float = 2.0, dropout: float = 0.1,
                 window: int = 4, out_channels: int = 1, early_skip: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be a multiple of heads={heads}")
        chans = [min(base * 2 ** i, max_channels) for i in range(levels)]
        self.max_phases, self.levels, self.window, self.early_skip = max_phases, levels, window, early_skip
        self.encoder = nn.ModuleList()
        cin = 2
        for i, c in enumerate(chans):
            self.encoder.append(ConvBlock(cin, c) if i == 0 else ResBlock(cin, c))
            cin = c
        self.to_tokens = nn.Conv3d(chans[-1], dim, 1)
        self.time_embed = nn.Sequential(nn.Linear(2, dim), nn.GELU(), nn.Linear(dim, dim))
        self.pos_conv = nn.ModuleList(nn.Conv3d(dim, dim, 3, padding=1, groups=dim) for _ in range(depth))
        self.spatial = nn.ModuleList(AttentionBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.temporal = nn.ModuleList(AttentionBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.from_tokens = nn.Conv3d(dim, chans[-1], 1)
        k = 2 if early_skip else 1
        self.decoder = nn.ModuleList((ConvBlock if i == 0 else ResBlock)(chans[i + 1] + k * chans[i], chans[i])
                                     for i in range(levels - 2, -1, -1))
        self.head = nn.Conv3d(chans[0], out_channels, 1)
        # (phase, subtraction) scales; set from the training data by the trainer.
        self.register_buffer("input_scale", torch.ones(2))

    # ---------------------------------------------------------------------------------- helpers
    @property
    def divisor(self) -> int:
        """Input sizes must be multiples of this (pooling levels times the attention window)."""
        return 2 ** (self.levels - 1) * self.window

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Shared encoder on (N, 2, z, y, x) phase pairs: every level's features."""
        feats = []
        for i, block in enumerate(self.encoder):
            if i > 0:
                x = F.max_pool3d(x, 2)
            x = block(x)
            feats.append(x)
        return feats

    def _phase_embedding(self, times: torch.Tensor) -> torch.Tensor:
        """(B, T) minutes -> (B, T, dim), from the acquisition time and its logarithm.

        Only the time identifies a phase (not its position in the input), so an exam with a
        phase removed gives its remaining phases the same embeddings as before."""
        t = times.clamp_min(0.0)
        return self.time_embed(torch.stack([t / 5.0, torch.log1p(t)], dim=-1))

    def _spatial(self, tok: torch.Tensor, layer: int) -> torch.Tensor:
        """Windowed self-attention of (N, D, z, y, x) tokens within each phase."""
        tok = tok + self.pos_conv[layer](tok)
        n, d, z, y, x = tok.shape
        w = self.window
        wz, wy, wx = min(w, z), min(w, y), min(w, x)
        if z % wz or y % wy or x % wx:
            raise ValueError(f"bottleneck {z}x{y}x{x} is not a multiple of the window {w}; pad inputs to "
                             f"multiples of {self.divisor}")
        seq = (tok.reshape(n, d, z // wz, wz, y // wy, wy, x // wx, wx)
               .permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(-1, wz * wy * wx, d))
        seq = self.spatial[layer](seq)
        return (seq.reshape(n, z // wz, y // wy, x // wx, wz, wy, wx, d)
                .permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(n, d, z, y, x))

    def _temporal(self, tok: torch.Tensor, mask: torch.Tensor, layer: int) -> torch.Tensor:
        """Self-attention across the phases at every location; absent phases are not attended to."""
        b, t, d, z, y, x = tok.shape
        seq = tok.permute(0, 3, 4, 5, 1, 2).reshape(-1, t, d)
        key_mask = mask[:, None, :].expand(b, z * y * x, t).reshape(-1, t)
        seq = self.temporal[layer](seq, key_mask)
        return seq.reshape(b, z, y, x, t, d).permute(0, 4, 5, 1, 2, 3)

    # ---------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, phase_mask: torch.Tensor | None = None,
                times: torch.Tensor | None = None) -> torch.Tensor:
        """Tumor logits (B, 1, z, y, x).

        x: (B, 2T, z, y, x) ``[P_1, P_1 - P_0, ...]``; phase_mask: (B, T) bool, True for present
        phases (default: all present; at least one must be); times: (B, T) minutes after the
        pre-contrast phase (default: every 1.5 min).
        """
        b, c = x.shape[:2]
        if c % 2 or not 1 <= c // 2 <= self.max_phases:
            raise ValueError(f"expected 2 x (1..{self.max_phases}) input channels, got {c}")
        t = c // 2
        if phase_mask is None:
            phase_mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
        phase_mask = phase_mask.to(device=x.device, dtype=torch.bool)
        if not bool(phase_mask.any(1).all()):
            raise ValueError("every sample needs at least one present phase")
        if times is None:
            times = DEFAULT_INTERVAL_MIN * torch.arange(1, t + 1, device=x.device, dtype=x.dtype).expand(b, t)
        spatial = x.shape[2:]
        scale = self.input_scale.reshape(1, 1, 2, 1, 1, 1).to(x.dtype)
        pairs = x.reshape(b, t, 2, *spatial)  # divided by the scales below (per phase in evaluation)
        # The earliest present phase of every sample (by acquisition time, not by slot).
        inf = torch.full_like(times, float("inf"), dtype=x.dtype)
        early = torch.where(phase_mask, times.to(x.dtype), inf).argmin(1)

        # Encoder. In evaluation the phases run one after another and only the running
        # masked sums of the skips are kept, so memory does not grow with the phase count.
        if self.training:
            feats = self._encode((pairs / scale).reshape(b * t, 2, *spatial))
            feats = [f.reshape(b, t, *f.shape[1:]) for f in feats]
            skips = [_masked_mean(f, phase_mask) for f in feats[:-1]]
            rows = torch.arange(b, device=x.device)
            firsts = [f[rows, early] for f in feats[:-1]] if self.early_skip else None
            bottleneck = feats[-1]
        else:
            w = phase_mask.to(x.dtype)
            count = w.sum(1).clamp_min(1.0)
            skips, firsts, bottleneck = None, None, []
            for k in range(t):
                fk = self._encode(pairs[:, k] / scale[:, 0])
                wk = (w[:, k] / count).reshape(b, 1, 1, 1, 1)
                ek = (early == k).to(x.dtype).reshape(b, 1, 1, 1, 1)
                if skips is None:
                    skips = [f * wk for f in fk[:-1]]
                    firsts = [f * ek for f in fk[:-1]]
                else:  # accumulated in place: no full-resolution temporaries
                    for s, e, f in zip(skips, firsts, fk[:-1]):
                        s.addcmul_(f, wk)
                        e.addcmul_(f, ek)
                bottleneck.append(fk[-1])
                del fk
            bottleneck = torch.stack(bottleneck, 1)
        # Each level's skip as its parts (concatenated by the decoder, in this order).
        skips = [[s, e] for s, e in zip(skips, firsts)] if self.early_skip else [[s] for s in skips]
        del firsts

        # Bottleneck: divided space-time attention.
        tok = self.to_tokens(bottleneck.flatten(0, 1))
        d, bz = tok.shape[1], tok.shape[2:]
        tok = tok + self._phase_embedding(times.to(tok.dtype)).reshape(b * t, d, 1, 1, 1)
        for layer in range(len(self.spatial)):
            tok = self._spatial(tok, layer)
            tok = self._temporal(tok.reshape(b, t, d, *bz), phase_mask, layer).reshape(b * t, d, *bz)
        fused = _masked_mean(self.from_tokens(tok).reshape(b, t, -1, *bz), phase_mask)

        # Decoder.
        y = fused
        for n, block in enumerate(self.decoder):
            parts = skips.pop()
            y = F.interpolate(y, size=parts[0].shape[2:], mode="trilinear", align_corners=False)
            if n == len(self.decoder) - 1 and not self.training:
                return self._last_level_in_slabs(block, y, parts)
            y = block(torch.cat([y, *parts], 1))
        return self.head(y)

    SLAB = 16  # z-planes per piece of the full-resolution decoder level in evaluation

    def _last_level_in_slabs(self, block: nn.Module, y: torch.Tensor, parts: list[torch.Tensor]) -> torch.Tensor:
        """``head(block(cat([y, *parts])))`` computed in z-slabs with a 2-plane halo: the same values
        (the level's convolutions reach at most 2 planes: two 3x3x3 convolutions in a ResBlock, one
        in a ConvBlock), without the full-resolution concatenation and conv outputs at once —
        the largest tensors of a whole-volume pass (1.2 GB at 448x448x160 on a 1.5 mm grid)."""
        depth, halo = y.shape[2], 2
        out = None
        for z0 in range(0, depth, self.SLAB):
            z1 = min(depth, z0 + self.SLAB)
            lo, hi = max(0, z0 - halo), min(depth, z1 + halo)
            part = self.head(block(torch.cat([y[:, :, lo:hi]] + [p[:, :, lo:hi] for p in parts], 1)))
            if out is None:
                out = part.new_empty(part.shape[:2] + y.shape[2:])
            out[:, :, z0:z1] = part[:, :, z0 - lo:z1 - lo]
        return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
