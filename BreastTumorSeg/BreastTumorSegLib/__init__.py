"""BreastTumorSegLib: the Qt-free engine of the BreastTumorSeg extension.

Segments breast tumors in dynamic contrast-enhanced MRI. Everything here runs in plain Python,
under ``Slicer --python-script`` and inside the Slicer GUI alike. Images are SimpleITK images
and keep their geometry (origin, spacing, direction) across every stage.

Subpackages, in pipeline order:

========== ==================================================================================
core       errors, progress/cancel, the DCE exam and its one assembly, results, image helpers
io         NIfTI/NRRD files, atomic writes; ``io.dicom``: reader, headers, phases, DICOM SEG
preprocess motion correction, body and whole-breast region, harmonization / network inputs
kinetics   kinetic maps, I-SPY functional tumor volume, seeded lesion growth, kinetic plots
models     registry and cards, safe weights, networks (``models.nets``), segmenters, shipped weights
engine     the end-to-end pipeline and post-processing (lesions), doubt score of a result
followup   treatment response across visits: visits registered to the baseline, lesions matched, RECIST
batch      many exams: discovery, resumable records, workers (local processes or Ray), worklist
evaluation metrics, statistics, the multi-reader study and its report
study      reader-study sessions: study folder, blinded timed autosaved sessions, locks, export
training   the one trainer, datasets, synthetic phantoms (``training.phantom``)
slicer     MRML bridge, module logic, background engine process (Qt-free; ``slicer.gui`` needs
           the Slicer application: widget, parameter node, dependency installer)
web        the web reader station (``study serve``): log-in, worklist, one MRML scene per reader
cli        the ``breasttumorseg`` command
========== ==================================================================================

Dependency direction (``Testing/test_architecture.py`` enforces it, lazy imports included)::

    core <- io <- preprocess <- kinetics <- models <- engine <- followup <- batch
    evaluation   uses core and io only
    study        uses core, io and the engine side (the assisted arm's model output), not evaluation
    training     uses core, io, preprocess, kinetics, models, engine, evaluation; nobody uses training
    slicer       uses everything above except training (study, followup and batch included); only slicer/ imports ``slicer`` and ``vtk``,
                 only slicer.gui imports Qt; the engine never imports slicer
    web          uses the study engine and the Qt-free slicer bridge (one MRML scene per reader); only
                 web/ imports the web server (aiohttp)
    cli          uses everything except slicer.gui; nothing imports cli or slicer.gui
"""
__version__ = "0.1.0"
