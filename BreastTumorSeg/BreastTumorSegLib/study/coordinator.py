"""The coordinator's side of a study: make it, see where the readers are, import masks drawn
elsewhere, and export the table ``breasttumorseg reader-study`` reads."""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import SimpleITK as sitk

from ..core.errors import InputError, OutputExistsError
from ..core.values import check_threshold
from ..io.atomic import atomic_target, sha256_file, write_image, write_json
from ..io.images import read_mask
from ..io.safety import (check_input_path, check_output_location, check_paths_exist, check_positive,
                         check_table_row, created_dirs, csv_separator_fix, exam_locations, open_table,
                         remove_empty_dirs)
from .definition import (ARMS, STUDY_FILE, Arm, Case, Grid, Study, check_name, load_study, pseudonyms,
                         reading_order)
from .model_scores import breast_scores
from .scores import (SCORES_COLUMNS, check_reader_scores, check_score_kinds, read_truth_table, score_rows,
                     scores_table_path)
from .session import DONE, IN_PROGRESS, SUBMITTED, TODO, iso, item_key, load_state
from .storage import LOCKED_MODE, Lock, append_line

EXPORT_COLUMNS = ("case", "reader", "mask", "prob", "roi", "arm", "time_s", "wall_s", "edits", "imported")


# ------------------------------------------------------------------------------------ init
def read_cases_table(path: str | os.PathLike) -> list[tuple[str, list[str], list[str]]]:
    """``case,path[,series]`` rows: an exam folder, a DICOM folder, or phase files separated by
    ``;``; the optional ``series`` column picks a DICOM folder's phases by series number or
    SeriesInstanceUID (``;``-separated, pre-contrast first). Relative paths are relative to the table."""
    path = check_input_path(path, "cases table")
    try:
        with open_table(path) as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = [(c or "").strip().lower() for c in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the cases table ({exc})", path, "save it as a UTF-8 CSV file") from None
    if not rows or "case" not in header or "path" not in header:
        raise InputError("the cases table needs a header case,path and one row per case", path,
                         csv_separator_fix(header, "write e.g. 'case,path' then 'P001,/data/P001'"))
    located = []
    for line, raw in enumerate(rows, start=2):
        check_table_row(raw, header, f"line {line}", path)
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        parts = [p.strip() for p in row.get("path", "").split(";") if p.strip()]
        located.append((f"line {line}", [str(q if q.is_absolute() else path.parent / q)
                                         for q in (Path(p).expanduser() for p in parts)]))
    check_paths_exist(located, path)
    out, seen = [], set()
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        where = f"{path}, line {line}"
        case = check_name(row.get("case", ""), "case id", where)
        if case in seen:
            raise InputError(f"case {case} is listed twice", where, "give each case one row")
        seen.add(case)
        parts = [p.strip() for p in row.get("path", "").split(";") if p.strip()]
        if not parts:
            raise InputError(f"case {case} has no path", where, "give the exam folder, DICOM folder or phase files")
        files = []
        for p in parts:
            q = Path(p).expanduser()
            q = q if q.is_absolute() else path.parent / q
            check_input_path(q, f"exam of case {case}", kind="any")
            files.append(str(q.resolve()))
        series = [x.strip() for x in row.get("series", "").split(";") if x.strip()]
        out.append((case, files, series))
    return out


# The Segment Editor effects of 3D Slicer a study may offer (their names as Slicer spells them).
KNOWN_EFFECTS = ("Paint", "Draw", "Erase", "Level tracing", "Grow from seeds", "Fill between slices", "Margin",
                 "Hollow", "Smoothing", "Scissors", "Islands", "Logical operators", "Mask volume", "Threshold")


def check_effects(names: Sequence[str]) -> list[str]:
    """The effect names as Slicer spells them; an unknown name is refused (it would be stored in
    study.json and offered to every reader)."""
    known = {e.lower(): e for e in KNOWN_EFFECTS}
    out = []
    for name in names:
        effect = known.get(" ".join(str(name).split()).lower())
        if effect is None:
            raise InputError(f"{name!r} is not a Segment Editor effect", "--effects",
                             f"choose from {', '.join(KNOWN_EFFECTS)}")
        if effect not in out:
            out.append(effect)
    return out


def model_sha256(name: str) -> str:
    """SHA-256 that identifies a model: its weights' (network), or its card's (code method);
    for an ensemble ``a+b`` the SHA-256 of the members' hashes."""
    from ..models.registry import model_card

    if "+" in name:
        return hashlib.sha256("+".join(model_sha256(n) for n in name.split("+")).encode()).hexdigest()
    card = model_card(name)
    if isinstance(card.get("sha256"), str):
        return card["sha256"]
    return hashlib.sha256(json.dumps(card, sort_keys=True, default=str).encode()).hexdigest()


def init_study(cases_csv: str | os.PathLike, readers: Sequence[str], arms: Sequence[str], output: str | os.PathLike,
               seed: int | None = None, model: str | None = None, model_outputs: str | os.PathLike | None = None,
               washout_cases: int = 0, washout_days: float = 0.0, autosave_s: float = 30.0,
               idle_timeout_s: float = 90.0, allowed_effects: Sequence[str] | None = None, device: str = "auto",
               name: str | None = None, breast_region: bool = True, threshold: float | None = None, progress: Callable[[str, float, str], None] | None = None,
               scores: Sequence[str] = (), truth: str | os.PathLike | None = None) -> Study:
    """Make the study folder *output* (all or nothing: built aside, then renamed into place).

    With *model* (any arms; the assisted arm needs one) the model's mask of every case is stored:
    from *model_outputs* (``<case>_seg.nii.gz`` and optionally ``<case>_prob.nii.gz``, e.g. from
    ``breasttumorseg segment``) or made now by running *model* on each exam, with its per-breast
    malignancy scores (:mod:`.model_scores`); ``study export`` always carries the model's rows, so
    an unaided study is reported as Hirsch et al. did (readers draw alone, the model is compared).
    *scores*: what each reader gives per breast besides the mask (``probability`` 0–100 %,
    ``birads``); *truth* a CSV ``case,side,malignant`` (coordinator only, never shown to readers)
    that ``study export`` puts into the scores table. *breast_region*: store each exam's
    whole-breast mask (the model's, else the classical one) as the region of the report's voxel-wise ROC.
    *threshold* overrides the model card's (e.g. one tuned for an ensemble ``a+b``, whose card
    otherwise takes its first member's); it is recorded in the assisted arm."""
    output = Path(output)
    if os.path.lexists(output) and (not output.is_dir() or any(output.iterdir())):
        raise OutputExistsError(f"{output}: exists and is not an empty folder. Fix: choose a new study folder")
    readers = [check_name(r.strip(), "reader", "--readers") for r in readers if r.strip()]
    if len(readers) < 1 or len(set(readers)) != len(readers):
        raise InputError("give one or more distinct reader names", "--readers", "e.g. --readers a,b,c")
    arms = [a.strip() for a in arms if a.strip()]
    if not arms or len(set(arms)) != len(arms) or any(a not in ARMS for a in arms):
        raise InputError(f"arms must be one or both of {', '.join(ARMS)}, got {','.join(arms)!r}", "--arms",
                         "e.g. --arms unaided,assisted")
    check_positive(washout_days, "--washout-days", upper=3650, zero_ok=True)
    check_positive(autosave_s, "--autosave-s", upper=86400)
    check_positive(idle_timeout_s, "--idle-timeout-s", upper=86400)
    if washout_cases < 0 or washout_days < 0 or (len(arms) == 1 and (washout_cases or washout_days)):
        raise InputError("a wash-out needs two arms and must not be negative", "--washout-cases/--washout-days",
                         "add --arms unaided,assisted, or drop the wash-out")
    allowed_effects = check_effects(allowed_effects) if allowed_effects else None
    assisted = "assisted" in arms
    score_kinds = check_score_kinds(scores)
    check_threshold(threshold)
    if threshold is not None and not (model and model_outputs is None):
        raise InputError("a threshold applies when the model is run (--model without --model-outputs)",
                         "--threshold", "give e.g. --threshold 0.4 with --model (and without --model-outputs)")
    if assisted and not model:
        raise InputError("the assisted arm needs the model that helps the readers", "--model",
                         "name it, e.g. --model st-demo (and --model-outputs DIR if its masks exist already)")
    cases_in = read_cases_table(cases_csv)
    # the study folder never lies in (or is) an exam folder or the cases table
    check_output_location(output, [cases_csv] + exam_locations(p for _, inputs, _ in cases_in for p in inputs),
                          "--output", "study folder")
    if len(arms) == 2 and washout_cases > len(cases_in):
        raise InputError(f"a wash-out of {washout_cases} cases cannot be met with {len(cases_in)} cases and 2 arms",
                         "--washout-cases", f"give at most {len(cases_in)}, or use --washout-days")
    seed = int(secrets.randbits(31)) if seed is None else int(seed)
    sha = model_sha256(model) if model else None
    truth_by_case = read_truth_table(truth, [c for c, _, _ in cases_in]) if truth is not None else {}
    labels = pseudonyms(len(cases_in), seed)
    if model_outputs is not None:
        model_outputs = check_input_path(model_outputs, "--model-outputs folder", kind="dir")

    made = created_dirs(output.parent)  # removed again when the study cannot be made
    stage = Path(tempfile.mkdtemp(prefix=f".{output.name}.staging-", dir=output.parent))
    try:
        cases = []
        for i, ((cid, inputs, series), label) in enumerate(zip(cases_in, labels)):
            if progress:
                progress("init", i / len(cases_in), f"case {cid}")
            grid, model_rec = _prepare_case(cid, inputs, label, stage, bool(model), model, model_outputs, device,
                                             breast_region, threshold, series)
            cases.append(Case(cid, label, inputs, grid, model_rec, series, truth_by_case.get(cid, {})))
        orders = {r: reading_order(labels, arms, seed, k, washout_cases) for k, r in enumerate(readers)}
        study = Study(output, name or output.name, seed, readers,
                      [Arm(a, model, sha, threshold) if a == "assisted" else Arm(a) for a in arms],
                      cases, orders, washout_cases, washout_days, autosave_s, idle_timeout_s,
                      list(allowed_effects) if allowed_effects else Study.__dataclass_fields__["allowed_effects"]
                      .default_factory(), _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                      {"name": model, "sha256": sha, **({"threshold": threshold} if threshold is not None else {})}
                      if model else None, score_kinds)
        write_json(stage / STUDY_FILE, study.as_json(), durable=True, allow_nan=False)
        for r in readers:
            (stage / "readers" / r).mkdir(parents=True)
        append_line(stage / "coordinator.jsonl", {"event": "study created", "time": iso(_now()),
                                                  "readers": readers, "arms": arms, "seed": seed,
                                                  "cases": len(cases)})
        if output.is_dir():
            output.rmdir()
        os.rename(stage, output)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        remove_empty_dirs(made)
        raise
    if progress:
        progress("init", 1.0, "done")
    return load_study(output)


def _now() -> float:
    import time

    return time.time()


def _prepare_case(cid, inputs, label, stage: Path, with_model: bool, model, model_outputs, device, region=True,
                  threshold=None, series=()):
    from ..io.files import load_exam

    try:
        exam = load_exam(inputs[0] if len(inputs) == 1 else inputs, series=list(series) or None)
    except InputError as exc:
        raise InputError(f"case {cid}: {exc.problem}", exc.source, exc.fix) from None
    grid = Grid.of(exam.reference)
    rec = {}
    if not with_model:
        if region:
            _write_region(stage, label, exam, rec)
        return grid, rec
    folder = stage / "model" / label
    folder.mkdir(parents=True)
    if model_outputs is not None:
        seg = Path(model_outputs) / f"{cid}_seg.nii.gz"
        mask = read_mask(seg, f"model mask of case {cid}")
        if not grid.matches(mask):
            raise InputError(f"the model mask of case {cid} is not on the exam's grid", seg,
                             "give the segment output made from this exam")
        images = {"seg.nii.gz": mask}
        prob = Path(model_outputs) / f"{cid}_prob.nii.gz"
        if prob.exists():
            from ..io.images import read_image

            images["prob.nii.gz"] = sitk.Cast(read_image(prob, f"model probability of case {cid}"), sitk.sitkFloat32)
        rec["scores"] = breast_scores(None, mask, images.get("prob.nii.gz"))
    else:
        from ..engine.pipeline import SegmentSettings, segment_exam

        result = segment_exam(exam, model=model, device=device, settings=SegmentSettings(threshold=threshold))
        images = {"seg.nii.gz": result.label, "prob.nii.gz": result.probability}
        rec["scores"] = breast_scores(exam, result.label, result.probability, result.breast_mask, result.lesions)
        if result.breast_mask is not None and region:
            images["breast.nii.gz"] = sitk.Cast(result.breast_mask > 0, sitk.sitkUInt8)
    for fname, img in images.items():
        path = folder / fname
        write_image(path, img, durable=True, exclusive=True)
        key = {"seg.nii.gz": "mask", "prob.nii.gz": "prob", "breast.nii.gz": "breast"}[fname]
        rec[key] = f"model/{label}/{fname}"
        rec[key + "_sha256"] = sha256_file(path)
    if region and "breast" not in rec:
        _write_region(stage, label, exam, rec)
    return grid, rec


def _write_region(stage: Path, label: str, exam, rec: dict) -> None:
    """The classical whole-breast mask of the exam (``regions/<label>/breast.nii.gz``): the region
    of the voxel-wise ROC in the report (over the whole volume the background inflates the AUC)."""
    from ..preprocess.breast_region import breast_mask

    mask = sitk.Cast(breast_mask(exam.pre) > 0, sitk.sitkUInt8)
    path = stage / "regions" / label / "breast.nii.gz"
    path.parent.mkdir(parents=True)
    write_image(path, mask, durable=True, exclusive=True)
    rec["breast"] = f"regions/{label}/breast.nii.gz"
    rec["breast_sha256"] = sha256_file(path)


# ---------------------------------------------------------------------------------- status
def reader_status(study: Study, reader: str) -> dict:
    state = load_state(study, reader)
    items = state["items"].values()
    lock = Lock(study.reader_dir(reader) / "session.lock", "status")
    holder = lock.holder()
    return {
        "reader": reader,
        "done": sum(i["status"] == DONE for i in items),
        "in_progress": sum(i["status"] == IN_PROGRESS for i in items),
        "to_do": sum(i["status"] == TODO for i in items),
        "total": len(state["items"]),
        "active_s": round(sum(i["active_s"] for i in items), 1),
        "wall_s": round(sum(i["wall_s"] for i in items), 1),
        "imported": sum(bool(i.get("imported")) for i in items),
        "session_open": holder is not None and not lock.is_stale(holder),
    }


def study_status(folder: str | os.PathLike) -> list[dict]:
    study = load_study(folder)
    return [reader_status(study, r) for r in study.readers]


# ---------------------------------------------------------------------------------- import
def import_mask(folder: str | os.PathLike, reader: str, case_id: str, mask: str | os.PathLike,
                arm: str | None = None, scores: dict | None = None) -> Path:
    """Store a mask drawn in another tool as the reader's submitted reading (marked imported, untimed),
    with the reader's per-breast *scores* (``{side: {kind: value}}``) when the study asks for them."""
    study = load_study(folder)
    if scores is not None:
        if not study.scores:
            raise InputError("this study asks the readers for no scores", "--probability/--birads",
                             "drop them, or make the study with --scores probability,birads")
        scores = check_reader_scores(scores, study.scores, "--probability/--birads")
    study.check_reader(reader)
    case = study.case_by_id(case_id)
    arm = arm or study.arms[0].name
    study.arm(arm)
    rdir = study.reader_dir(reader)
    for folder in (study.folder / "readers", rdir, rdir / case.label, rdir / case.label / arm):
        if os.path.lexists(folder) and not folder.is_dir():
            raise InputError("a file lies where the study keeps a reader's folder", folder,
                             "move that file away (the study folder was changed by hand)")
    img = read_mask(mask, "imported mask")
    if not case.grid.matches(img):
        raise InputError(f"the mask is not on the grid of case {case_id} ({case.grid.difference(img)})",
                         mask, "resample it onto the exam's pre-contrast grid")
    img = sitk.Cast(img, sitk.sitkUInt8)
    img.SetOrigin(case.grid.origin)
    img.SetSpacing(case.grid.spacing)
    img.SetDirection(case.grid.direction)
    with Lock(rdir / "session.lock", "the coordinator (study import)"):
        state = load_state(study, reader)
        st = state["items"][item_key(case.label, arm)]
        if st["status"] == DONE:
            raise InputError(f"reader {reader} has submitted case {case_id} ({arm}) already; submitted work is locked",
                             rdir / case.label / arm / SUBMITTED, "nothing to do, or make a new study")
        target = rdir / case.label / arm
        n = st["versions"] + 1
        while (target / f"v{n:04d}.nii.gz").exists():
            n += 1
        version = write_image(target / f"v{n:04d}.nii.gz", img, durable=True, exclusive=True)
        final = write_image(target / SUBMITTED, img, durable=True, exclusive=True)
        os.chmod(final, LOCKED_MODE)
        now = _now()
        st.update({"status": DONE, "imported": True, "versions": n, "last_version": version.name,
                   "last_sha256": sha256_file(version), "submitted_sha256": sha256_file(final),
                   "submitted_at": now, **({"scores": scores} if scores else {})})
        write_json(rdir / "state.json", state, durable=True, allow_nan=False)
        append_line(rdir / "audit.jsonl", {"event": "imported", "reader": reader, "label": case.label, "arm": arm,
                                           "source": str(Path(mask).resolve()), "sha256": st["submitted_sha256"],
                                           "t": round(now, 3), "time": iso(now), "pid": os.getpid()})
    return final


# ---------------------------------------------------------------------------------- export
def export_rows(study: Study, table_dir: Path, partial: bool = False) -> tuple[list[dict], list[str]]:
    """Rows of the reader-study table, and the case ids left out (``partial``)."""
    states = {r: load_state(study, r) for r in study.readers}
    missing = []
    for c in study.cases:
        for r in study.readers:
            for a in study.arms:
                st = states[r]["items"][item_key(c.label, a.name)]
                if st["status"] != DONE:
                    missing.append((c.id, r, a.name))
    if missing and not partial:
        c, r, a = missing[0]
        raise InputError(f"{len(missing)} reading(s) are not submitted yet (first: reader {r}, case {c}, {a})",
                         study.path, "wait for the readers (see `breasttumorseg study status`), or pass --partial "
                                     "to export the complete cases only")
    left_out = sorted({c for c, _, _ in missing})

    def rel(p: Path) -> str:
        return os.path.relpath(p, table_dir)

    rows = []
    for c in study.cases:
        if c.id in left_out:
            continue
        roi = rel(study.folder / c.model["breast"]) if c.model.get("breast") else ""
        for a in study.arms:
            for r in study.readers:
                st = states[r]["items"][item_key(c.label, a.name)]
                final = study.reader_dir(r) / c.label / a.name / SUBMITTED
                if not final.exists() or (st.get("submitted_sha256") and sha256_file(final) != st["submitted_sha256"]):
                    raise InputError("a submitted mask is missing or does not match its recorded SHA-256", final,
                                     "copy the study folder again")
                imported = bool(st.get("imported"))
                rows.append({"case": c.id, "reader": r, "mask": rel(final), "prob": "", "roi": roi, "arm": a.name,
                             "time_s": "" if imported else f"{st['active_s']:.1f}",
                             "wall_s": "" if imported else f"{st['wall_s']:.1f}",
                             "edits": "" if imported else str(st["edits"]), "imported": int(imported)})
        if c.model.get("mask"):
            rows.append({"case": c.id, "reader": "model", "mask": rel(study.folder / c.model["mask"]),
                         "prob": rel(study.folder / c.model["prob"]) if c.model.get("prob") else "",
                         "roi": roi, "arm": "", "time_s": "", "wall_s": "", "edits": "", "imported": 0})
    return rows, left_out


def study_inputs(study: Study) -> list[Path]:
    """What a command reading *study* must never write over or into: the study folder (every file
    of it) and every exam of its cases."""
    return [study.folder] + exam_locations(p for c in study.cases for p in c.inputs)


def check_export_location(study: Study, output: Path) -> None:
    """The table goes outside the study folder and every exam, and is not a folder."""
    check_output_location(output, study_inputs(study), "--output", "table")
    if output.is_dir():
        raise InputError("--output must be a CSV file name, not a folder", output, "e.g. --output table.csv")
    if os.path.lexists(output) and not output.is_file():
        raise InputError("--output is not a regular file (a pipe or device?)", output, "give a new CSV file name")
    probe = output.parent
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"the table would lie under {probe}, which is a file", output, "choose a folder for the table")


def export_table(folder: str | os.PathLike, output: str | os.PathLike, partial: bool = False,
                 overwrite: bool = False, scores_output: str | os.PathLike | None = None) -> tuple[Path, list[str]]:
    """Write the ``reader-study`` table (atomic); returns its path and the case ids left out.

    When the study has scores (readers' or the model's), the scores table ``reader-study --scores``
    reads is written too, to *scores_output* (default ``TABLE.scores.csv``, see :mod:`.scores`)."""
    study = load_study(folder)
    output = Path(output)
    check_export_location(study, output)
    rows, left_out = export_rows(study, output.parent.resolve(), partial)
    if not rows:
        raise InputError("no case is complete; nothing to export", study.path, "wait for the readers")
    states = {r: load_state(study, r) for r in study.readers}
    def submitted(reader: str, label: str, arm: str) -> dict | None:
        st = states[reader]["items"][item_key(label, arm)]
        return st.get("scores") if st["status"] == DONE else None

    score_table = score_rows(study, submitted, [c.id for c in study.cases if c.id not in left_out])
    outputs = {output: (EXPORT_COLUMNS, rows)}
    if score_table:
        scores_output = Path(scores_output) if scores_output is not None else scores_table_path(output)
        check_export_location(study, scores_output)
        if scores_output.resolve() == output.resolve():
            raise InputError("the scores table would replace the study table", "--scores-output",
                             "give another file name")
        outputs[scores_output] = (SCORES_COLUMNS, score_table)
    for path in outputs:
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path}: exists already. Fix: choose another --output, or pass --overwrite")
    output.parent.mkdir(parents=True, exist_ok=True)
    for path, (columns, table) in outputs.items():
        with atomic_target(path, durable=True) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, columns)
            w.writeheader()
            w.writerows(table)
    append_line(study.folder / "coordinator.jsonl", {"event": "exported", "time": iso(_now()), "table": str(output.resolve()),
                                                     "rows": len(rows), "left_out": left_out,
                                                     "scores_rows": len(score_table)})
    return output, left_out
