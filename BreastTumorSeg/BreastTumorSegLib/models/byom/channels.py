"""Which DCE image goes to which input channel of a foreign model.

A mapping is a list of sources, one per channel: ``phaseK`` (phase K as acquired; 0 is the
pre-contrast phase, 1 the first post-contrast) or ``subK`` (phase K minus the pre-contrast
phase). It comes from ``--channels`` (``phase1`` or ``sub1,phase1`` or a preset name), else from
the sidecar ``breasttumorseg.json`` next to (or inside) the model folder, else from a preset for a
one-channel model (``--channels`` alone keeps the images as they are). The sidecar may also say which intensity preprocessing the model expects
before its own (``"intensity": "as-is"`` or ``"zscore-all-phases"``) and which of the model's
labels are tumor (``"tumor_labels"``, default every foreground label).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ...core.errors import InputError, ModelError
from ...core.exam import DCEExam

SIDECAR_NAME = "breasttumorseg.json"

# Named mappings. MAMA-MIA: the challenge's nnU-Net baseline takes one channel, the first
# post-contrast phase (their sample code copies <case>_0001 to channel _0000); its maintainers
# recommend z-scoring with the mean and standard deviation of all phases first (nnU-Net then
# applies its own per-case z-score and resamples to its plans' 1 mm spacing itself).
PRESETS: dict[str, dict] = {
    "mama-mia": {"channels": ["phase1"], "intensity": "zscore-all-phases",
                 "description": "MAMA-MIA nnU-Net baseline: channel 0 = first post-contrast phase, "
                                "z-scored over all phases"},
    "subtraction": {"channels": ["sub1"], "intensity": "as-is",
                    "description": "channel 0 = first post-contrast minus pre-contrast"},
}
DEFAULT_ONE_CHANNEL_PRESET = "mama-mia"
INTENSITY_MODES = ("as-is", "zscore-all-phases")
_SOURCE = re.compile(r"^(phase|sub)(\d+)$")


@dataclass
class ChannelMapping:
    """Sources per channel, the intensity step before the model's own, and where it came from."""

    sources: list[str]
    intensity: str = "as-is"
    origin: str = "preset mama-mia"
    tumor_labels: list[int] | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"channels": list(self.sources), "intensity": self.intensity, "from": self.origin,
                "tumor_labels": self.tumor_labels}


def parse_sources(text: str | list, where: str) -> list[str]:
    """``"sub1,phase1"`` or a list -> checked source names; a preset name gives its channels."""
    if isinstance(text, str) and text.strip().lower() in PRESETS:
        return list(PRESETS[text.strip().lower()]["channels"])
    items = [s.strip().lower() for s in (text.split(",") if isinstance(text, str) else text)]
    bad = [s for s in items if not (isinstance(s, str) and _SOURCE.match(s)) or s == "sub0"]
    if not items or bad:
        raise InputError(f"channel sources {bad or items!r} are not understood", where,
                         "write one source per channel: phaseK (K = 0 pre-contrast, 1 first post-contrast, ...) "
                         f"or subK (phase K minus pre-contrast, K >= 1), comma-separated, or a preset "
                         f"({', '.join(PRESETS)})")
    return items


def find_sidecar(model_path: Path) -> Path | None:
    """``breasttumorseg.json`` inside the model folder or next to it (first found)."""
    for candidate in (model_path / SIDECAR_NAME, model_path.parent / SIDECAR_NAME):
        if candidate.is_file():
            return candidate
    return None


def resolve_mapping(n_channels: int, model_path: Path, channels: str | None = None,
                    sidecar: dict | None = None, sidecar_path: Path | None = None) -> ChannelMapping:
    """The mapping for a model with *n_channels* inputs: ``--channels`` > sidecar > preset.

    A mapping whose length is not the model's channel count is refused here, before any image is read.
    """
    if sidecar is None and sidecar_path is None:
        sidecar_path = find_sidecar(model_path)
    if sidecar is None and sidecar_path is not None:
        try:
            sidecar = json.loads(sidecar_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{sidecar_path}: cannot read the channel sidecar ({exc}). "
                             "Fix: make it a JSON object like {\"channels\": [\"phase1\"]}") from None
    sidecar = dict(sidecar or {})
    where = str(sidecar_path) if sidecar_path else "model card"
    preset = sidecar.get("preset")
    if preset is not None and str(preset).lower() not in PRESETS:
        raise ModelError(f"{where}: unknown preset {preset!r}. Fix: use one of {', '.join(PRESETS)} "
                         "or list the channels")
    base = dict(PRESETS[str(preset).lower()]) if preset else {}
    base.update({k: v for k, v in sidecar.items() if k != "preset"})
    if channels:
        sources, origin = parse_sources(channels, "--channels"), "--channels"
    elif "channels" in base:
        sources, origin = parse_sources(base["channels"], where), (f"preset {preset}" if preset and "channels" not in sidecar else where)
    elif n_channels == 1:
        base = {**PRESETS[DEFAULT_ONE_CHANNEL_PRESET], **base}
        sources, origin = list(base["channels"]), f"preset {DEFAULT_ONE_CHANNEL_PRESET} (default for one channel)"
    else:
        raise InputError(f"the model takes {n_channels} input channels and no mapping from DCE phases is given",
                         str(model_path), f"write {SIDECAR_NAME} next to the model, e.g. "
                         '{"channels": ["phase0", "phase1", "sub1"]}, or pass --channels with '
                         f"{n_channels} sources")
    if len(sources) != n_channels:
        raise InputError(f"the channel mapping {','.join(sources)} ({origin}) has {len(sources)} source(s) but the model "
                         f"takes {n_channels} input channel(s)", str(model_path),
                         f"give exactly {n_channels} sources with --channels or in {SIDECAR_NAME}")
    intensity = str(base.get("intensity", "as-is"))
    if intensity not in INTENSITY_MODES:
        raise ModelError(f"{where}: unknown intensity preprocessing {intensity!r}. Fix: use one of "
                         f"{', '.join(INTENSITY_MODES)}")
    labels = base.get("tumor_labels")
    return ChannelMapping(sources, intensity, origin, None if labels is None else [int(v) for v in labels])


def channel_images(exam: DCEExam, mapping: ChannelMapping) -> list[sitk.Image]:
    """The model's input images (float32, on the exam grid) in channel order.

    A source naming a phase the exam does not have is refused with the fix.
    """
    need = max(int(_SOURCE.match(s).group(2)) for s in mapping.sources)
    if need >= exam.n_phases:
        raise InputError(f"the model's channel mapping {','.join(mapping.sources)} ({mapping.origin}) needs phase {need} "
                         f"but the exam has phases 0..{exam.n_phases - 1}", exam.case_id,
                         "give an exam with that phase, or another mapping with --channels")
    arrays = exam.arrays(np.float32)
    if mapping.intensity == "zscore-all-phases":
        arrays = (arrays - arrays.mean()) / max(float(arrays.std()), 1e-8)
    out = []
    for source in mapping.sources:
        kind, k = _SOURCE.match(source).groups()
        a = arrays[int(k)] - arrays[0] if kind == "sub" else arrays[int(k)]
        img = sitk.GetImageFromArray(np.ascontiguousarray(a, dtype=np.float32))
        img.CopyInformation(exam.reference)
        out.append(img)
    return out
