"""The kinetics of a result in the scene: a lesion's signal-time curve, the SER bands of the tumor,
one lesion grown from a point.

:class:`KineticsView` works on the phases as they are in the scene (not motion-corrected) and
keeps the exam and its kinetic maps of the last phases it saw (a pass over the whole exam that a
lesion click should not repeat). *outputs* is the :class:`~.logic.OutputNodes` of a result.
"""
from __future__ import annotations

from numbers import Integral
from typing import Sequence

import SimpleITK as sitk

from . import mrml_bridge as bridge
from ..core.errors import InputError
from .phases import Phase, exam_to_run, first_case_id



def lesion_row_table(outputs, row) -> object:
    """The lesion table (vtkTable) of *outputs*, after checking that *row* is one of its rows."""
    table = None if outputs.lesion_table is None else outputs.lesion_table.GetTable()
    n = 0 if table is None else table.GetNumberOfRows()
    if isinstance(row, bool) or not isinstance(row, Integral) or not 0 <= row < n:
        raise InputError(f"there is no lesion in row {row!r} (the lesion table has {n} row(s))", "lesion table",
                         "pick a row of the table" if n else "segment first; the result has no lesion")
    return table

class KineticsView:
    """Curves, SER bands and seeded growth over one MRML scene (*ctx*)."""

    def __init__(self, ctx: bridge.MRMLContext):
        self.ctx = ctx
        self._cache = None  # (key, exam, maps) of the last phases

    def _kinetic_exam(self, phases: Sequence[Phase], times_min=None):
        """(exam, kinetic maps) of the phases, cached per phase nodes and their modification times
        (the maps cost a pass over the whole exam; a lesion click should not repeat it)."""
        from ..kinetics.maps import compute_kinetic_maps

        key = (tuple((ph.node.GetID(), ph.node.GetMTime()) for ph in phases),
               None if times_min is None else tuple(times_min))
        cached = self._cache
        if cached is None or cached[0] != key:
            exam = exam_to_run(phases, first_case_id(phases), times_min)
            cached = (key, exam, compute_kinetic_maps(exam))
            self._cache = cached
        return cached[1], cached[2]

    def _lesion_components(self, outputs, reference: sitk.Image) -> sitk.Image:
        """Connected components of segment "Tumor" labelled as the lesion table is (1 = largest)."""
        mask = bridge.segment_to_label(self.ctx, outputs.segmentation, bridge.TUMOR_SEGMENT_ID, reference)
        return sitk.RelabelComponent(sitk.ConnectedComponent(mask, True), sortByObjectSize=True)

    def lesion_curve(self, phases: Sequence[Phase], outputs, row: int, times_min=None,
                     chart=None):
        """Signal-time curve of the lesion in *row* of the lesion table against its surrounding
        tissue (mean percent enhancement per phase, from :mod:`..kinetics.plots`), as a plot chart
        node (reused when given) over a table node. Returns ``(chart, curve)``.

        Curves are measured on the phases as they are in the scene (not motion-corrected)."""
        from ..kinetics.plots import signal_time_curves

        exam, maps = self._kinetic_exam(phases, times_min)
        label = int(lesion_row_table(outputs, row).GetColumnByName("Lesion").GetValue(row))
        components = self._lesion_components(outputs, exam.reference)
        one = sitk.Cast(components == label, sitk.sitkUInt8)
        curve = signal_time_curves(exam, one, maps=maps)[1]
        base = outputs.segmentation.GetName()
        rows = [[t, le, bg] for t, le, bg in zip(curve.times_min, curve.lesion_pe_mean, curve.background_pe_mean)]
        table = None if chart is None else chart.GetNthPlotSeriesNode(0).GetTableNode() \
            if chart.GetNumberOfPlotSeriesNodes() else None
        table = bridge.fill_table(self.ctx, ("Time (min)", f"Lesion {label} PE (%)", "Surrounding tissue PE (%)"),
                                  rows, table, f"{base} lesion curve")
        if chart is None:
            chart = self.ctx.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{base} lesion curve")
        if chart.GetNumberOfPlotSeriesNodes() == 0:
            for column, colour in ((1, (0.9, 0.2, 0.15)), (2, (0.4, 0.4, 0.4))):
                series = self.ctx.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", table.GetTable().GetColumnName(column))
                series.SetAndObserveTableNodeID(table.GetID())
                series.SetXColumnName("Time (min)")
                series.SetYColumnName(table.GetTable().GetColumnName(column))
                series.SetPlotType(series.PlotTypeScatter)
                series.SetColor(*colour)
                chart.AddAndObservePlotSeriesNodeID(series.GetID())
        else:
            chart.GetNthPlotSeriesNode(0).SetYColumnName(table.GetTable().GetColumnName(1))
            chart.GetNthPlotSeriesNode(0).SetName(table.GetTable().GetColumnName(1))
        kinetics = curve.kinetics or {}
        chart.SetTitle(f"Lesion {label}: {kinetics.get('curve_type', 'curve')}")
        chart.SetXAxisTitle("Time after the pre-contrast phase (min)")
        chart.SetYAxisTitle("Percent enhancement (%)")
        return chart, curve

    def ser_overlay(self, phases: Sequence[Phase], outputs, times_min=None, node=None):
        """SER bands inside segment "Tumor" (1 persistent-like, 2 plateau-like, 3 washout-like, as the
        ``kinetics`` command writes them) as a label map node with its colour table, for the slice
        views' label layer."""
        from ..kinetics.plots import BAND_COLOURS, ser_band_image

        exam, maps = self._kinetic_exam(phases, times_min)
        mask = bridge.segment_to_label(self.ctx, outputs.segmentation, bridge.TUMOR_SEGMENT_ID, exam.reference)
        bands = ser_band_image(maps, mask)
        base = outputs.segmentation.GetName()
        if node is None:
            node = self.ctx.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{base} SER bands")
        bridge.image_to_volume_node(self.ctx, bands, node.GetName(), node)
        colors = self.ctx.scene.GetFirstNodeByName("BreastTumorSeg SER bands")
        if colors is None:
            colors = self.ctx.scene.AddNewNodeByClass("vtkMRMLColorTableNode", "BreastTumorSeg SER bands")
            colors.SetTypeToUser()
            colors.SetNumberOfColors(4)
            colors.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
            for i, (name, rgb) in enumerate(zip(("persistent-like", "plateau-like", "washout-like"), BAND_COLOURS), 1):
                colors.SetColor(i, f"SER {name}", *(c / 255.0 for c in rgb), 1.0)
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        node.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
        return node

    def grow_from_point(self, phases: Sequence[Phase], outputs, ras, times_min=None) -> dict:
        """Grow one lesion from a point (RAS mm, e.g. a markup the reader placed on a missed lesion)
        with the seeded FTV growth the CLI has (``--model ftv --seed-ras``) and add it to segment
        "Tumor" (the lesion table is the caller's to measure again). Returns the growth's summary."""
        from ..kinetics.seeded import ras_to_lps, segment_from_seed

        exam, maps = self._kinetic_exam(phases, times_min)
        grown = segment_from_seed(exam, ras_to_lps(ras), maps=maps)
        current = bridge.segment_to_label(self.ctx, outputs.segmentation, bridge.TUMOR_SEGMENT_ID, exam.reference)
        union = sitk.Or(sitk.Cast(current > 0, sitk.sitkUInt8), sitk.Cast(grown.mask > 0, sitk.sitkUInt8))
        seg = outputs.segmentation
        segment = seg.GetSegmentation().GetSegment(bridge.TUMOR_SEGMENT_ID)
        terminology = segment.GetTerminology() if segment is not None else None
        bridge.label_to_segmentation(self.ctx, union, seg, reference_node=phases[0].node,
                                     terminology=terminology or None)
        return grown.summary()
