"""Neural-network segmenters built from model cards (see :mod:`.registry`): load, crop, predict, paste."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.errors import ModelError
from ..core.exam import DCEExam
from ..preprocess.harmonize import breast_crop, to_model_grid
from ..core.imageutil import resample_to
from .inference import phase_kwargs, predict_probability
from .cards import read_card
from ..core.progress import Reporter
from .weights import load_verified_state_dict

def load_network(card_path: str | Path) -> tuple[object, dict]:
    """The network a model card describes, with its weights (SHA-256 checked), and the card.

    The one place where stored networks are loaded: tumor models, whole-breast models and the
    starting point of fine-tuning all come through here.
    """
    from .nets import build_network

    card_path = Path(card_path)
    card = read_card(card_path)
    weights = card_path.parent / card["weights"]
    if not weights.exists():
        raise ModelError(f"{weights}: weight file named by model card {card_path.name} is missing. "
                         "Fix: reinstall the model")
    state = load_verified_state_dict(weights, card["sha256"])
    try:
        net = build_network(card["architecture"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{card_path}: unknown or invalid architecture {card['architecture']} ({exc})") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{weights}: weights do not fit the architecture in {card_path.name} "
                         f"({str(exc).splitlines()[0]})") from None
    return net, card


class CardNetwork:
    """A stored network together with its model card (what it expects, how it was trained)."""

    task = "tumor"  # the card's "task" this class serves

    def __init__(self, net, card: dict, card_path: Path | None = None):
        self.net = net.eval()
        self.card = card
        self.card_path = card_path
        self.model_id = f"{card['name']}@{card['sha256'][:12]}"

    @classmethod
    def from_card(cls, card_path: str | Path, **_ignored):
        task = read_card(card_path).get("task", "tumor")
        if task != cls.task:
            raise ModelError(f"{card_path}: a model for task {task!r}, not {cls.task!r}. "
                             "Fix: choose a model made for this task (breasttumorseg models lists them)")
        net, card = load_network(card_path)
        return cls(net, card, Path(card_path))

    @property
    def spacing_mm(self) -> float:
        return float(self.card["inputs"]["spacing_mm"])

    def probability_on(self, x: np.ndarray, grid: sitk.Image, reference: sitk.Image,
                       crop: tuple[slice, ...] | None = None, device: str = "auto",
                       reporter: Reporter | None = None, net_kwargs: dict | None = None) -> sitk.Image:
        """Crop -> predict -> paste, the one path of every stored network.

        *x* (C, z, y, x) is the input cut out of *grid* (the model grid) by *crop* (whole grid
        when None). The probability is pasted into the full grid (zero outside the crop) and
        resampled linearly onto *reference*, clamped to [0, 1]. With the card's
        ``inference.flip_lr`` the network also sees the input mirrored left-right (last axis of
        the LPS grid; the breasts are mirror images) and the two answers are averaged.
        """
        prob = predict_probability(self.net, x, device=device, reporter=reporter, net_kwargs=net_kwargs)
        if self.card.get("inference", {}).get("flip_lr", False):
            flipped = predict_probability(self.net, np.ascontiguousarray(x[..., ::-1]), device=device,
                                          net_kwargs=net_kwargs)
            prob = 0.5 * (prob + flipped[..., ::-1])
        size = grid.GetSize()
        full = np.zeros((size[2], size[1], size[0]), np.float32)
        full[crop if crop is not None else ...] = prob
        img = sitk.GetImageFromArray(full)
        img.CopyInformation(grid)
        return sitk.Clamp(resample_to(img, reference, sitk.sitkLinear), sitk.sitkFloat32, 0.0, 1.0)


class NetworkSegmenter(CardNetwork):
    """A tumor network plus the preprocessing its card prescribes.

    Phase-aware networks (card ``inputs.times``, the spatial-temporal transformer) also get the
    exam's post-contrast acquisition times, so every caller (CLI, panel, batch) gives them.
    """

    def model_inputs(self, exam: DCEExam, breast_mask: sitk.Image | None):
        """Harmonized inputs on the model grid, cropped to the breasts (plus margin)."""
        inputs_cfg = self.card["inputs"]
        mg = to_model_grid(exam, self.spacing_mm, breast_mask, kind=inputs_cfg.get("kind", "hirsch"))
        scales = np.asarray(self.card.get("normalization", {}).get("channel_scale", [1.0] * mg.inputs.shape[0]),
                            np.float32)
        crop = tuple(slice(0, s) for s in mg.inputs.shape[1:])
        if breast_mask is not None:
            bm = sitk.GetArrayFromImage(resample_to(breast_mask, mg.grid, sitk.sitkNearestNeighbor)) > 0
            crop = breast_crop(bm, self.spacing_mm)
        # Crop first, then scale the one contiguous copy in place, and let the uncropped inputs go:
        # at 448x448x160 x 6 phases that is 0.6 GB less at the network's peak.
        x = np.array(mg.inputs[(slice(None),) + crop], dtype=np.float32, order="C")
        x /= scales[:, None, None, None]
        mg.inputs = None
        return x, mg, crop

    def network_kwargs(self, exam: DCEExam) -> dict:
        """Extra forward arguments: acquisition times for a phase-aware network, else none."""
        if self.card["inputs"].get("times"):
            return phase_kwargs(exam.effective_times()[1:])
        return {}

    def predict(self, exam: DCEExam, breast_mask: sitk.Image | None, reporter: Reporter,
                device: str = "auto", **options) -> sitk.Image:
        x, mg, crop = self.model_inputs(exam, breast_mask)
        return self.probability_on(x, mg.grid, exam.reference, crop, device, reporter, self.network_kwargs(exam))


class EnsembleSegmenter:
    """Average of the probability maps of several segmenters."""

    def __init__(self, members: list):
        if not members:
            raise ModelError("an ensemble needs at least one model")
        self.members = members
        self.model_id = "+".join(m.model_id for m in members)
        self.card = {"name": self.model_id, "description": "ensemble (mean probability) of " + ", ".join(
            m.card.get("name", m.model_id) for m in members),
            "postprocess": members[0].card.get("postprocess", {})}
        # Every member sees the same masks: the first learned whole-breast model a member names.
        gates = [m.card["breast_model"] for m in members if m.card.get("breast_model")]
        if gates:
            self.card["breast_model"] = gates[0]

    def predict(self, exam, breast_mask, reporter, device="auto", **options):
        acc = None
        for m in self.members:
            p = sitk.Cast(m.predict(exam, breast_mask, reporter, device=device, **options), sitk.sitkFloat32)
            acc = p if acc is None else acc + p
        return acc / float(len(self.members))
