"""nnU-Net v2 trained-model folders as segmenters, run by nnU-Net's own ``nnUNetPredictor``.

The folder is ``<Trainer>__<Plans>__<configuration>/`` with ``dataset.json``, ``plans.json`` and
``fold_*/checkpoint_final.pth`` (a ``Dataset###_Name`` folder or a results folder holding exactly
one such model is accepted too). The checkpoints are pickles: they are read only when pinned by a
registered card (bytes hashed, then unpickled from memory) or with ``--trust-pickle``
(:mod:`.trust`). The network is built from the plans as nnU-Net builds it, and nnU-Net does its
own preprocessing (intensity normalisation, resampling to the plans' spacing, sliding window,
mirroring), resampling back and the label decision; we give it the channel images the mapping
(:mod:`.channels`) makes from the exam, on the exam's grid.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ...core.errors import InputError, ModelError
from ...core.exam import DCEExam
from ...core.progress import Reporter
from .channels import channel_images, resolve_mapping
from .output import LabelledSegmenter, on_reference
from .trust import (check_checkpoint_header, check_json_object, load_pickle_bytes, read_pinned, refuse_untrusted,
                    require_package)

CHECKPOINT = "checkpoint_final.pth"
_READERS = ("SimpleITKIO",)  # image readers whose arrays are SimpleITK's (z, y, x) order


def _is_model_folder(path: Path) -> bool:
    return (path / "plans.json").is_file() and (path / "dataset.json").is_file()


def resolve_folder(path: str | Path) -> Path:
    """The trained-model folder in *path*: the folder itself, or the one model inside a
    ``Dataset###_Name`` folder (3d_fullres preferred), or inside the one dataset of a results folder."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise InputError("no such nnU-Net model folder", str(path),
                         "give the folder that holds plans.json, dataset.json and fold_*/checkpoint_final.pth")
    if _is_model_folder(path):
        return path.resolve()
    models = sorted(d for d in path.iterdir() if d.is_dir() and "__" in d.name and _is_model_folder(d))
    if not models:  # a results folder: look one level deeper (Dataset101_... or Dataset105_...)
        models = sorted(m for d in path.iterdir() if d.is_dir() and d.name.startswith("Dataset")
                        for m in d.iterdir() if m.is_dir() and "__" in m.name and _is_model_folder(m))
    full = [m for m in models if m.name.endswith("__3d_fullres")]
    if len(models) == 1 or len(full) == 1:
        return (models[0] if len(models) == 1 else full[0]).resolve()
    if not models:
        raise InputError("no nnU-Net v2 trained model found (a folder with plans.json, dataset.json and "
                         "fold_*/checkpoint_final.pth)", str(path), "point to the <Trainer>__<Plans>__<configuration> folder")
    raise InputError(f"several nnU-Net models found ({', '.join(m.name for m in models)})", str(path),
                     "point to the one <Trainer>__<Plans>__<configuration> folder you want")


def model_files(root: Path, folds=None) -> list[Path]:
    """The files that define the model (pinned at registration): the two JSONs and every checkpoint."""
    ckpts = sorted(root.glob(f"fold_*/{CHECKPOINT}"))
    if folds is not None:
        ckpts = [root / f"fold_{f}" / CHECKPOINT for f in folds]
    return [root / "dataset.json", root / "plans.json"] + ckpts


def dry_load(seg: "NnUNetSegmenter") -> None:
    """What ``models add`` checks before registering, without unpickling anything: plans.json is a
    JSON object with configurations, dataset.json was parsed with its channels and labels, and every
    checkpoint starts as a PyTorch checkpoint does."""
    plans = check_json_object(read_pinned(seg.root, "plans.json", seg.pins), seg.root / "plans.json",
                              ("configurations",))
    if not isinstance(plans["configurations"], dict) or not plans["configurations"]:
        raise ModelError(f"{seg.root / 'plans.json'}: no configurations. Fix: use the model's original plans.json")
    if not (seg.dataset_json.get("channel_names") or seg.dataset_json.get("modality")) \
            or not isinstance(seg.dataset_json.get("labels"), dict):
        raise ModelError(f"{seg.root / 'dataset.json'}: lacks channel_names and labels. "
                         "Fix: use the model's original dataset.json")
    for fold in seg.folds:
        check_checkpoint_header(seg.root / f"fold_{fold}" / CHECKPOINT)


def parse_folds(text) -> list[str] | None:
    if text is None or text == "":
        return None
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    if not items or not all(s == "all" or s.isdigit() for s in items):
        raise InputError(f"folds {text!r} are not understood", "--folds", "write fold numbers like 0,1,2 (or all)")
    return [str(s) for s in items]


class NnUNetSegmenter(LabelledSegmenter):
    """An nnU-Net v2 model folder as a :class:`~..registry.Segmenter` (probability = the sum of the
    tumor labels' softmax; :meth:`predict_with_label` also gives nnU-Net's own label map)."""

    def __init__(self, path, card: dict | None = None, trust_pickle: bool = False, folds=None,
                 mirroring: bool = True, channels: str | None = None, tile_step_size: float = 0.5, **_ignored):
        self.root = resolve_folder(path)
        self.pins = dict(card["sha256"]) if card else None
        if self.pins is None and not trust_pickle:
            raise refuse_untrusted(self.root, "nnU-Net")
        self.dataset_json = self._json("dataset.json")
        available = sorted(p.parent.name[5:] for p in self.root.glob(f"fold_*/{CHECKPOINT}"))
        if self.pins is not None:
            available = sorted(k.split("/")[0][5:] for k in self.pins if k.endswith(CHECKPOINT))
        self.folds = parse_folds(folds) or available
        missing = [f for f in self.folds if not (self.root / f"fold_{f}" / CHECKPOINT).is_file()]
        if not self.folds or missing:
            raise InputError(f"no {CHECKPOINT} for fold(s) {', '.join(missing) or '(none found)'}", str(self.root),
                             f"choose from the folds present ({', '.join(available) or 'none'}) with --folds")
        names = self.dataset_json.get("channel_names") or self.dataset_json.get("modality") or {}
        self.mapping = resolve_mapping(len(names), self.root, channels)
        labels = {str(k): v for k, v in (self.dataset_json.get("labels") or {}).items()}
        if any(not isinstance(v, int) for v in labels.values()):
            raise ModelError(f"{self.root}: region-based nnU-Net labels are not supported. "
                             "Fix: use a model trained with plain integer labels")
        self.tumor_labels = self.mapping.tumor_labels or sorted(v for v in labels.values() if v != 0)
        self.mirroring = bool(mirroring)
        self.tile_step_size = float(tile_step_size)
        name = (card or {}).get("name") or f"nnunet:{self.root.name}"
        digest = hashlib.sha256(json.dumps(self.pins, sort_keys=True).encode()).hexdigest() if self.pins else "unpinned"
        self.model_id = f"{name}@{digest[:12]}" + ("" if self.folds == available else f"[folds {','.join(self.folds)}]")
        self.card = {"name": name, "format": "nnunet", "path": str(self.root),
                     "description": (card or {}).get("description") or f"nnU-Net v2 model {self.root.parent.name}/{self.root.name}",
                     "training": (card or {}).get("training") or {}, "license": (card or {}).get("license"),
                     "folds": self.folds, "mirroring": self.mirroring, "channels": self.mapping.as_dict(),
                     "tumor_labels": self.tumor_labels, "postprocess": {"threshold": 0.5, "mode": "absolute"}}
        self._predictor = None

    def _json(self, rel: str) -> dict:
        return check_json_object(read_pinned(self.root, rel, self.pins), self.root / rel)

    # ------------------------------------------------------------------------------- loading
    def check_installed(self) -> None:
        require_package("nnunetv2", "nnunet")

    def _build(self, device):
        """nnU-Net's predictor with the network built from the plans and the checked weights."""
        self.check_installed()
        with contextlib.redirect_stdout(sys.stderr):  # nnU-Net prints on import and set-up
            from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
            from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
            from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
            from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

            from ..inference import select_device

            dev = select_device(device)
            plans_manager = PlansManager(self._json("plans.json"))
            if plans_manager.plans.get("image_reader_writer", "SimpleITKIO") not in _READERS:
                raise ModelError(f"{self.root}: image reader {plans_manager.plans['image_reader_writer']} is not "
                                 "supported (only SimpleITKIO). Fix: use a model planned with nnU-Net's default reader")
            parameters, first = [], None
            for fold in self.folds:
                rel = f"fold_{fold}/{CHECKPOINT}"
                ckpt = load_pickle_bytes(read_pinned(self.root, rel, self.pins), self.root / rel)
                first = first or ckpt
                parameters.append(ckpt["network_weights"])
            configuration = plans_manager.get_configuration(first["init_args"]["configuration"])
            n_in = determine_num_input_channels(plans_manager, configuration, self.dataset_json)
            n_out = plans_manager.get_label_manager(self.dataset_json).num_segmentation_heads
            trainer = recursive_find_trainer_class_by_name(first["trainer_name"])
            if trainer is None:
                raise ModelError(f"{self.root}: nnU-Net trainer {first['trainer_name']} is not installed. "
                                 "Fix: install the nnU-Net version or plug-in the model was trained with")
            if "plans_manager" in inspect.signature(trainer.build_network_architecture).parameters:
                net = trainer.build_network_architecture(plans_manager, configuration, n_in, n_out,
                                                         enable_deep_supervision=False)
            else:
                net = trainer.build_network_architecture(
                    configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
                    configuration.network_arch_init_kwargs_req_import, n_in, n_out, enable_deep_supervision=False)
            net.load_state_dict(parameters[0])
            predictor = nnUNetPredictor(tile_step_size=self.tile_step_size, use_gaussian=True,
                                        use_mirroring=self.mirroring, perform_everything_on_device=dev.type == "cuda",
                                        device=dev, verbose=False, verbose_preprocessing=False, allow_tqdm=False)
            predictor.manual_initialization(net, plans_manager, configuration, parameters, self.dataset_json,
                                            first["trainer_name"], first.get("inference_allowed_mirroring_axes"))
        return predictor

    # ----------------------------------------------------------------------------- predicting
    def predict_with_label(self, exam: DCEExam, breast_mask: sitk.Image | None, reporter: Reporter,
                           device: str = "auto", **options) -> tuple[sitk.Image, sitk.Image]:
        """(tumor probability, nnU-Net's own label map as 0/1) on the exam grid."""
        images = channel_images(exam, self.mapping)
        reporter.update(0.0, f"nnU-Net: loading {len(self.folds)} fold(s)")
        if self._predictor is None:
            self._predictor = self._build(device)
        ref = images[0]
        data = np.stack([sitk.GetArrayFromImage(i) for i in images]).astype(np.float32)
        # the properties nnU-Net's SimpleITKIO gives a file it reads
        props = {"sitk_stuff": {"spacing": ref.GetSpacing(), "origin": ref.GetOrigin(), "direction": ref.GetDirection()},
                 "spacing": list(ref.GetSpacing())[::-1]}
        reporter.update(0.1, "nnU-Net: predicting")
        with contextlib.redirect_stdout(sys.stderr):
            seg, probs = self._predictor.predict_single_npy_array(data, props, None, None, True)
        reporter.update(1.0, "nnU-Net done")
        tumor = np.isin(np.asarray(seg), self.tumor_labels).astype(np.uint8)
        prob = np.clip(np.sum(np.asarray(probs, np.float32)[self.tumor_labels], axis=0), 0.0, 1.0).astype(np.float32)
        return on_reference(exam, prob, tumor)
