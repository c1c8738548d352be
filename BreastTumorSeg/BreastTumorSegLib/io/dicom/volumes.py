"""From one stack to its volumes: the temporal split, each volume's grid and acquisition times.

A stack whose slice positions repeat holds several phases. It is split by the first tag that tells
them apart cleanly, in this order: TemporalPositionIdentifier (TemporalPositionIndex in enhanced
MR), TriggerTime (TemporalPositionTimeOffset), acquisition date/time, content date/time,
AcquisitionNumber. A tag qualifies when it has as many values as positions repeat and no value
holds the same position twice. Every volume must then be complete and on a regular grid.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...core.errors import InputError
from .geometry import POSITION_TOLERANCE_MM, Geometry, cluster_index, position_clusters, volume_geometry
from .headers import Frame
from .stacks import Stack


@dataclass
class Volume:
    """One 3D volume: one temporal position of one stack, frames sorted along the slice normal."""

    stack: Stack
    frames: list[Frame]
    geometry: Geometry
    split_key: str | None  # the tag that split the stack, None for a single-volume stack
    split_value: object = None
    start_dt: float | None = None  # absolute seconds (acquisition, else content date/time)
    start_dt_source: str | None = None
    trigger_ms: float | None = None
    temporal_index: int | None = None

    def name(self) -> str:
        if self.split_key is None:
            return self.stack.name()
        return f"{self.stack.name()} [{self.split_key} {_fmt_value(self.split_value)}]"


def _fmt_value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _rounded(v: float | None, step: float) -> float | None:
    return None if v is None else round(v / step) * step


# (name shown to users, getter); the order is the order of preference.
SPLIT_KEYS: list[tuple[str, Callable[[Frame], object]]] = [
    ("TemporalPositionIdentifier", lambda f: f.temporal_index),
    ("TriggerTime", lambda f: _rounded(f.trigger_ms, 1e-3)),
    ("AcquisitionTime", lambda f: _rounded(f.acq_dt, 1e-3)),
    ("ContentTime", lambda f: _rounded(f.content_dt, 1e-3)),
    ("AcquisitionNumber", lambda f: f.acq_number),
]


def split_key_name(key: str, enhanced: bool) -> str:
    if not enhanced:
        return key
    return {"TemporalPositionIdentifier": "TemporalPositionIndex", "TriggerTime": "TemporalPositionTimeOffset",
            "AcquisitionTime": "FrameAcquisitionDateTime", "ContentTime": "FrameReferenceDateTime",
            "AcquisitionNumber": "FrameAcquisitionNumber"}.get(key, key)


def split_stack(stack: Stack) -> list[tuple[str | None, object, list[Frame]]]:
    """Split a stack into volumes: [(key name, key value, frames)], ordered by the key value."""
    frames = stack.frames
    d, uniq = position_clusters(frames)
    idx = cluster_index(d, uniq)
    counts = np.bincount(idx, minlength=len(uniq))
    n_max = int(counts.max())
    if n_max == 1:
        return [(None, None, list(frames))]
    for name, getter in SPLIT_KEYS:
        values = [getter(f) for f in frames]
        if any(v is None for v in values):
            continue
        groups: dict[object, list[int]] = defaultdict(list)
        for i, v in enumerate(values):
            groups[v].append(i)
        if len(groups) != n_max:
            continue
        if any(len(set(idx[g].tolist())) != len(g) for g in groups.values()):
            continue
        key = split_key_name(name, stack.enhanced)
        return [(key, v, [frames[i] for i in groups[v]]) for v in sorted(groups)]
    if np.all(counts == n_max):
        # No tag separates the phases: take the k-th frame at every position, in acquisition order.
        per_pos: dict[int, list[int]] = defaultdict(list)
        for i in range(len(frames)):
            per_pos[int(idx[i])].append(i)
        vols: list[list[Frame]] = [[] for _ in range(n_max)]
        for members in per_pos.values():
            members.sort(key=lambda i: (frames[i].acq_dt or 0.0, frames[i].instance_number or 0, frames[i].frame_index))
            for k, i in enumerate(members):
                vols[k].append(frames[i])
        return [("order", k + 1, v) for k, v in enumerate(vols)]
    raise InputError(
        f"slice positions repeat {int(counts.min())} to {n_max} times, and no tag (temporal position, trigger time, "
        "acquisition time or number) separates the phases", stack.name(),
        "re-send the complete series; if several acquisitions were merged into one series, split them at the scanner")


def _volume_times(v: Volume) -> None:
    acq = [f.acq_dt for f in v.frames]
    con = [f.content_dt for f in v.frames]
    if all(a is not None for a in acq):
        v.start_dt, v.start_dt_source = min(acq), "AcquisitionTime"
    elif all(c is not None for c in con):
        v.start_dt, v.start_dt_source = min(con), "ContentTime"
    trig = [f.trigger_ms for f in v.frames]
    if all(t is not None for t in trig):
        v.trigger_ms = min(trig)
    ti = [f.temporal_index for f in v.frames]
    if all(t is not None for t in ti):
        v.temporal_index = min(ti)
    if v.stack.enhanced:
        v.start_dt_source = {"AcquisitionTime": "FrameAcquisitionDateTime",
                             "ContentTime": "FrameReferenceDateTime"}.get(v.start_dt_source, v.start_dt_source)


def stack_volumes(stack: Stack) -> list[Volume]:
    """Split and check a stack: every phase complete, on a regular grid."""
    parts = split_stack(stack)
    all_pos = position_clusters(stack.frames)[1]
    volumes = []
    for key, value, frames in parts:
        where = stack.name() if key is None else f"{stack.name()} [{key} {_fmt_value(value)}]"
        if key is not None:
            _, pos = position_clusters(frames)
            if len(pos) < len(all_pos):
                have = np.asarray(pos)
                missing = [p for p in all_pos if np.min(np.abs(have - p)) > POSITION_TOLERANCE_MM]
                raise InputError(
                    f"this phase has {len(pos)} slices where the series has {len(all_pos)} positions; missing at "
                    f"{', '.join(f'{m:.2f}' for m in missing[:5])} mm along the slice normal", where,
                    "re-send the complete series from the scanner or PACS (an interrupted copy drops files)")
        frames, geom = volume_geometry(frames, where)
        vol = Volume(stack, frames, geom, key, value)
        _volume_times(vol)
        volumes.append(vol)
    if parts[0][0] == "order":
        # Keep the documented ordering name for messages.
        for v in volumes:
            v.split_key = "instance order"
    return volumes


def estimated_volumes(stack: Stack) -> int:
    """How many volumes the stack holds: the most frames met at one slice position."""
    d, uniq = position_clusters(stack.frames)
    return int(np.bincount(cluster_index(d, uniq), minlength=len(uniq)).max())
