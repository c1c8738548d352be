"""MONAI bundles as segmenters: the bundle's own network, preprocessing, inferer and
post-processing, read from its configs by MONAI's ``ConfigParser``.

A bundle is ``configs/metadata.json`` (its ``network_data_format`` gives the input channels and
output classes), ``configs/inference.json`` (``network_def``, ``preprocessing``, ``inferer``,
``postprocessing``, as in the MONAI model zoo) and ``models/model.ts`` (TorchScript) or
``models/model.pt`` (state dict). Configs instantiate any Python callable (``_target_``) and
``model.pt`` is a pickle, so a bundle is loaded only when registered (pinned) or with
``--trust-pickle``, as an nnU-Net folder (:mod:`.trust`). The channel images go to the bundle as
NIfTI files (one per channel) in a temporary folder, as if the user had given them to the bundle;
``output_dir`` is pointed there too, so files the bundle's post-processing saves land there. The
post-processed label (first output channel) must come back on the input grid (bundles that
resample invert it with ``Invertd``).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ...core.errors import InputError, ModelError
from ...core.exam import DCEExam
from ...core.progress import Reporter
from .channels import channel_images, resolve_mapping
from .output import LabelledSegmenter, on_reference
from .trust import check_checkpoint_header, check_json_object, read_pinned, refuse_untrusted, require_package

METADATA = "configs/metadata.json"
INFERENCE = "configs/inference.json"
WEIGHTS = ("models/model.ts", "models/model.pt")


def resolve_bundle(path) -> Path:
    path = Path(path).expanduser()
    if not (path / METADATA).is_file():
        raise InputError("not a MONAI bundle (no configs/metadata.json)", str(path),
                         "give the bundle folder that holds configs/ and models/")
    if not (path / INFERENCE).is_file() or not any((path / w).is_file() for w in WEIGHTS):
        raise InputError("the MONAI bundle lacks configs/inference.json or models/model.ts|model.pt", str(path),
                         "download the complete bundle (monai.bundle.download) or add the missing files")
    return path.resolve()


def bundle_files(root: Path) -> list[Path]:
    return [root / METADATA, root / INFERENCE] + [root / w for w in WEIGHTS if (root / w).is_file()]


def dry_load(seg: "MonaiBundleSegmenter") -> None:
    """What ``models add`` checks before registering, without loading the weights: the inference
    config is a JSON object with network_def (metadata.json was parsed when the bundle was opened)
    and the weights file starts as a PyTorch checkpoint / TorchScript archive does."""
    config = check_json_object(read_pinned(seg.root, INFERENCE, seg.pins), seg.root / INFERENCE)
    if seg.weights.endswith(".pt") and "network_def" not in config:
        raise ModelError(f"{seg.root / INFERENCE}: lacks network_def (needed to load models/model.pt). "
                         "Fix: use the bundle's original configs")
    check_checkpoint_header(seg.root / seg.weights)


class MonaiBundleSegmenter(LabelledSegmenter):
    """A MONAI bundle as a :class:`~..registry.Segmenter` (probability = the tumor classes'
    softmax when the network's output is on the input grid; the label is the bundle's own)."""

    def __init__(self, path, card: dict | None = None, trust_pickle: bool = False, channels: str | None = None,
                 **_ignored):
        self.root = resolve_bundle(path)
        self.pins = dict(card["sha256"]) if card else None
        if self.pins is None and not trust_pickle:
            raise refuse_untrusted(self.root, "MONAI bundle")
        self.metadata = self._json(METADATA)
        try:
            fmt = self.metadata["network_data_format"]
            self.input_key, spec_in = next(iter(fmt["inputs"].items()))
            self.output_key, spec_out = next(iter(fmt["outputs"].items()))
            n_in, n_out = int(spec_in["num_channels"]), int(spec_out["num_channels"])
        except (KeyError, TypeError, ValueError, StopIteration) as exc:
            raise ModelError(f"{self.root / METADATA}: network_data_format lacks inputs/outputs with num_channels "
                             f"({exc}). Fix: use a bundle whose metadata describes its network") from None
        self.mapping = resolve_mapping(n_in, self.root, channels)
        self.tumor_labels = self.mapping.tumor_labels or list(range(1, max(n_out, 2)))
        self.weights = next(w for w in WEIGHTS if (self.root / w).is_file())
        name = (card or {}).get("name") or f"monai:{self.root.name}"
        digest = hashlib.sha256(json.dumps(self.pins, sort_keys=True).encode()).hexdigest() if self.pins else "unpinned"
        self.model_id = f"{name}@{digest[:12]}"
        self.card = {"name": name, "format": "monai", "path": str(self.root),
                     "description": (card or {}).get("description") or self.metadata.get("name") or f"MONAI bundle {self.root.name}",
                     "training": (card or {}).get("training") or {"data": self.metadata.get("data_source")},
                     "license": (card or {}).get("license"), "channels": self.mapping.as_dict(),
                     "tumor_labels": self.tumor_labels, "postprocess": {"threshold": 0.5, "mode": "absolute"}}

    def _json(self, rel: str) -> dict:
        return check_json_object(read_pinned(self.root, rel, self.pins), self.root / rel)

    def check_installed(self) -> None:
        require_package("monai", "monai")
        require_package("nibabel", "monai")  # MONAI reads the channel files through nibabel

    def _network(self, parser, dev):
        import torch

        data = read_pinned(self.root, self.weights, self.pins)
        if self.weights.endswith(".ts"):
            return torch.jit.load(io.BytesIO(data), map_location=dev).eval()
        net = parser.get_parsed_content("network_def")
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)  # a state dict needs no code
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]  # saved by MONAI's CheckpointSaver
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"{self.root / self.weights}: weights do not fit network_def "
                             f"({str(exc).splitlines()[0]}). Fix: use the bundle's own model.pt") from None
        return net.to(dev).eval()

    def predict_with_label(self, exam: DCEExam, breast_mask: sitk.Image | None, reporter: Reporter,
                           device: str = "auto", **options) -> tuple[sitk.Image, sitk.Image]:
        self.check_installed()
        import torch
        from monai.bundle import ConfigParser

        from ..inference import select_device

        images = channel_images(exam, self.mapping)
        dev = select_device(device)
        reporter.update(0.0, "MONAI bundle: loading")
        with tempfile.TemporaryDirectory(prefix="breasttumorseg-monai-") as tmp, \
                contextlib.redirect_stdout(sys.stderr):
            files = []
            for k, img in enumerate(images):
                files.append(str(Path(tmp) / f"{exam.case_id}_{k:04d}.nii.gz"))
                sitk.WriteImage(img, files[-1])
            parser = ConfigParser()
            parser.read_meta(self.metadata)
            parser.read_config(self._json(INFERENCE))
            parser["bundle_root"] = str(self.root)
            parser["output_dir"] = str(Path(tmp) / "out")
            parser["device"] = f"$torch.device('{dev}')"
            net = self._network(parser, dev)
            data = parser.get_parsed_content("preprocessing")({self.input_key: files if len(files) > 1 else files[0]})
            reporter.update(0.2, "MONAI bundle: predicting")
            with torch.no_grad():
                logits = parser.get_parsed_content("inferer")(data[self.input_key][None].to(dev), net)[0]
            data[self.output_key] = logits
            if "postprocessing" in parser:
                data = parser.get_parsed_content("postprocessing")(data)
        label = np.asarray(data[self.output_key].detach().cpu() if hasattr(data[self.output_key], "detach")
                           else data[self.output_key])[0].transpose(2, 1, 0)
        shape = sitk.GetArrayViewFromImage(exam.reference).shape
        if label.shape != shape:
            raise ModelError(f"{self.root}: the bundle's post-processed output has shape {label.shape[::-1]} (x, y, z), "
                             f"not the input's {shape[::-1]}. Fix: add Invertd to the bundle's postprocessing so its "
                             "answer comes back on the input grid")
        tumor = np.isin(np.rint(label).astype(np.int64), self.tumor_labels).astype(np.uint8)
        if tuple(logits.shape[1:]) == shape[::-1]:
            soft = torch.softmax(logits.float(), 0) if logits.shape[0] > 1 else torch.sigmoid(logits.float())
            idx = self.tumor_labels if logits.shape[0] > 1 else [0]
            prob = np.asarray(soft[idx].sum(0).cpu()).transpose(2, 1, 0).astype(np.float32)
        else:  # the network ran on another grid: the label is all we have on the input grid
            prob = tumor.astype(np.float32)
        reporter.update(1.0, "MONAI bundle done")
        return on_reference(exam, prob, tumor)
