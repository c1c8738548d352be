"""The per-breast malignancy result in the scene: a probability table and the heatmap overlay.

What ``breasttumorseg segment --classify`` (the panel's engine run) or ``classify`` wrote
(``<case>_classification.json``, ``<case>_heatmap.nii.gz``; :mod:`..cli.classify`), or a
:class:`~..engine.classify.ClassificationResult` made in this process, becomes:

* a table node ``<reference> malignancy`` with one row per breast in the field of view (side,
  probability, number of enhancing candidates, model), patient right first;
* a scalar volume ``<reference> malignancy heatmap`` (the heatmap on the pre-contrast grid, its
  geometry kept) with a colour map and a 0-1 window, shown as the slice views' foreground layer
  by :func:`show_heatmap` (``visible=False`` hides it again).

Qt-free: the panel's label and toggle live in :mod:`.gui.classify_panel`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from ..core.errors import InputError
from . import mrml_bridge as bridge

COLUMNS = ("Breast", "P(malignant)", "Candidates", "Model")
SIDE_NAMES = {"R": "right", "L": "left"}
HEATMAP_COLOUR = "vtkMRMLColorTableNodeFileColdToHotRainbow.txt"
HEATMAP_FALLBACK_COLOUR = "vtkMRMLColorTableNodeRainbow"
HEATMAP_OPACITY = 0.5
CAVEAT = "synthetic-data model, not for clinical use"


@dataclass
class ClassificationNodes:
    """The nodes of one classification; pass them back in to reuse them."""

    table: object = None
    heatmap: object = None
    summary: dict | None = None  # the classification JSON

    def probability_text(self) -> str:
        """``"P(malignant): right 0.04 (below 0.39), left 0.93 (above 0.39) (model ...; synthetic-data
        model, not for clinical use)"``: each breast against the summary's operating threshold
        (the model card's; a summary without one shows the probabilities alone)."""
        from ..engine.classify import probability_text

        s = self.summary or {}
        probs = s.get("probabilities") or {}
        t = s.get("operating_threshold")
        parts = [f"{SIDE_NAMES[k]} {probability_text(float(probs[k]), None if t is None else float(t))}"
                 for k in ("R", "L") if k in probs]
        if not parts:
            return "P(malignant): no breast found"
        return f"P(malignant): {', '.join(parts)} (model {s.get('model', '?')}; {CAVEAT})"


def rows(summary: dict) -> list[list]:
    breasts = summary.get("breasts") or {}
    return [[SIDE_NAMES[k], round(float(summary["probabilities"][k]), 4),
             int((breasts.get(k) or {}).get("n_candidates", 0)), summary.get("model", "")]
            for k in ("R", "L") if k in (summary.get("probabilities") or {})]


def import_classification(ctx: bridge.MRMLContext, summary: dict, heatmap: sitk.Image, reference_node,
                          nodes: ClassificationNodes | None = None) -> ClassificationNodes:
    """Put a classification (its JSON summary and heatmap) into the table and heatmap nodes."""
    out = nodes or ClassificationNodes()
    base = reference_node.GetName()
    out.summary = summary
    out.table = bridge.fill_table(ctx, COLUMNS, rows(summary), out.table, f"{base} malignancy")
    out.heatmap = bridge.image_to_volume_node(ctx, sitk.Cast(heatmap, sitk.sitkFloat32),
                                              f"{base} malignancy heatmap", out.heatmap)
    display = out.heatmap.GetDisplayNode()
    if display is not None:
        colour = ctx.scene.GetNodeByID(HEATMAP_COLOUR) and HEATMAP_COLOUR or HEATMAP_FALLBACK_COLOUR
        display.SetAndObserveColorNodeID(colour)
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(0.0, 1.0)
    for node in (out.table, out.heatmap):
        bridge.place_next_to(ctx, node, reference_node)
    return out


def import_result(ctx: bridge.MRMLContext, result, reference_node,
                  nodes: ClassificationNodes | None = None) -> ClassificationNodes:
    """A :class:`~..engine.classify.ClassificationResult` made in this process into the scene."""
    return import_classification(ctx, result.as_dict(), result.heatmap, reference_node, nodes)


def import_folder(ctx: bridge.MRMLContext, folder, case_id: str, reference_node, files: dict | None = None,
                  nodes: ClassificationNodes | None = None) -> ClassificationNodes | None:
    """Load ``<case>_classification.json`` and ``<case>_heatmap.nii.gz`` from *folder* (or where the
    engine's *files* say they are); None when the run wrote no classification."""
    from ..engine.classify import output_names
    from ..io.images import read_image

    names = output_names(case_id)
    paths = {k: Path((files or {}).get(k) or Path(folder) / n) for k, n in names.items()}
    if not paths["classification"].is_file():
        return None
    summary = read_result_json(paths["classification"], "the classification")
    return import_classification(ctx, summary, read_image(paths["heatmap"], "malignancy heatmap"), reference_node,
                                 nodes)


def read_result_json(path: Path, what: str) -> dict:
    """A JSON object the engine wrote (summary, classification); a damaged file is an InputError naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {what} ({exc})", path, "run the engine again into a new folder") from None
    if not isinstance(data, dict):
        raise InputError(f"{what} holds a JSON {type(data).__name__}, not the engine's object", path,
                         "run the engine again into a new folder")
    return data


def show_heatmap(ctx: bridge.MRMLContext, nodes: ClassificationNodes | None, visible: bool = True) -> None:
    """The heatmap as the slice views' colour foreground layer (``visible=False``: hidden again)."""
    if nodes is None or nodes.heatmap is None:
        return
    composites = ctx.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    for i in range(composites.GetNumberOfItems()):
        comp = composites.GetItemAsObject(i)
        if visible:
            comp.SetForegroundVolumeID(nodes.heatmap.GetID())
            comp.SetForegroundOpacity(HEATMAP_OPACITY)
        elif comp.GetForegroundVolumeID() == nodes.heatmap.GetID():
            comp.SetForegroundOpacity(0.0)
