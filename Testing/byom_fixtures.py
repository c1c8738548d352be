"""Tiny foreign models for the bring-your-own-model tests, built with the foreign tools themselves.

``python byom_fixtures.py nnunet ROOT`` builds, under ROOT, an nnU-Net v2 trained-model folder
from small DCE phantoms with nnU-Net's own steps: a raw dataset (channel 0 = first post-contrast
phase, label 1 = tumor), nnU-Net's dataset fingerprint extraction and experiment planner, the
network built from the plans by nnU-Net's trainer class (its feature widths shrunk in the plans so
that it is tiny), its own preprocessing of the training cases, a few Adam steps, and a checkpoint
in nnU-Net's format. It runs in its own process because nnU-Net reads its folders from the
environment when imported. Prints the model folder on success.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"))

PHANTOM = dict(spacing=4.0, n_phases=3, motion_mm=0.0, n_tumors=1, tumor_radius_mm=14.0, noise=0.0, bias=0.0)
TRAIN_SEEDS = (201, 202, 203)
TEST_SEED = 211
DATASET = "Dataset987_TinyDCE"


def phantom_case(seed: int, root: Path) -> Path:
    """A phantom exam in the MAMA-MIA layout under *root*; returns its exam folder."""
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom

    ph = make_phantom(seed, **PHANTOM)
    write_phantom(ph, root, layout="mamamia")
    return root / "images" / ph.case_id


def build_nnunet(root: Path, steps: int = 20) -> Path:
    root = Path(root)
    raw, pre, res = root / "raw", root / "preprocessed", root / "results"
    for d in (raw, pre, res):
        d.mkdir(parents=True, exist_ok=True)
    os.environ.update(nnUNet_raw=str(raw), nnUNet_preprocessed=str(pre), nnUNet_results=str(res))
    ds = raw / DATASET
    (ds / "imagesTr").mkdir(parents=True, exist_ok=True)
    (ds / "labelsTr").mkdir(parents=True, exist_ok=True)
    for seed in TRAIN_SEEDS:
        case = phantom_case(seed, root / "phantoms")
        cid = case.name
        shutil.copy(case / f"{cid}_0001.nii.gz", ds / "imagesTr" / f"{cid}_0000.nii.gz")
        shutil.copy(root / "phantoms" / "segmentations" / "expert" / f"{cid}.nii.gz", ds / "labelsTr" / f"{cid}.nii.gz")
    dataset_json = {"channel_names": {"0": "DCE_post1"}, "labels": {"background": 0, "tumor": 1},
                    "numTraining": len(TRAIN_SEEDS), "file_ending": ".nii.gz"}
    (ds / "dataset.json").write_text(json.dumps(dataset_json))

    import numpy as np
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from acvl_utils.cropping_and_padding.padding import pad_nd_image

    dataset_id = int(DATASET[7:10])
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True, clean=True, verbose=False,
                         show_progress_bar=False)
    plan_experiments([dataset_id])
    plans_file = pre / DATASET / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [min(4 * 2 ** i, 16) for i in range(arch["n_stages"])]  # tiny, same topology
    plans_manager = PlansManager(plans)
    config = plans_manager.get_configuration("3d_fullres")
    net = nnUNetTrainer.build_network_architecture(plans_manager, config, 1, 2, enable_deep_supervision=False)

    torch.manual_seed(0)
    pp = DefaultPreprocessor(verbose=False)
    divisor = [int(np.prod([s[d] for s in arch["strides"]])) for d in range(3)]
    xs, ys = [], []
    for img in sorted((ds / "imagesTr").glob("*.nii.gz")):
        cid = img.name[: -len("_0000.nii.gz")]
        data, seg, _ = pp.run_case([str(img)], str(ds / "labelsTr" / f"{cid}.nii.gz"), plans_manager, config,
                                   dataset_json)
        data = pad_nd_image(data, shape_must_be_divisible_by=divisor)
        seg = pad_nd_image(seg, shape_must_be_divisible_by=divisor)
        xs.append(torch.from_numpy(np.ascontiguousarray(data, np.float32)))
        ys.append(torch.from_numpy(np.ascontiguousarray(seg[0], np.int64)).clamp(min=0))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    weight = torch.tensor([1.0, 10.0])
    net.train()
    for step in range(steps):
        i = step % len(xs)
        logits = net(xs[i][None])
        loss = torch.nn.functional.cross_entropy(logits, ys[i][None], weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    # A few steps do not make a detector; calibrate the tumor logit's bias so that on the test
    # exam (TEST_SEED, first post-contrast phase) the predicted tumor volume equals the true one:
    # fixed weights whose answer there has both classes, so that comparisons are not trivial.
    # The margin left above zero (0.1) must survive nnU-Net's predictor: since nnunetv2 2.8 it
    # accumulates the sliding-window logits in float16 (resolution ~0.004 at these magnitudes),
    # which rounded the earlier 1e-3 margin to a tie, i.e. background everywhere.
    test_case = phantom_case(TEST_SEED, root / "phantoms")
    data, seg, _ = pp.run_case([str(test_case / f"{test_case.name}_0001.nii.gz")],
                               str(root / "phantoms" / "segmentations" / "expert" / f"{test_case.name}.nii.gz"),
                               plans_manager, config, dataset_json)
    x = torch.from_numpy(np.ascontiguousarray(pad_nd_image(data, shape_must_be_divisible_by=divisor), np.float32))
    with torch.no_grad():
        z = net(x[None])
        margin = (z[0, 1] - z[0, 0]).flatten()
        truth = int((seg > 0).sum())
        shift = -float(torch.sort(margin, descending=True).values[truth - 1]) + 0.1
        net.decoder.seg_layers[-1].bias[1] += shift
    print(f"tumor-logit bias shifted by {shift:.3f} ({truth} tumor voxels in training)", file=sys.stderr)

    out = res / DATASET / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (out / "fold_0").mkdir(parents=True, exist_ok=True)
    (out / "plans.json").write_text(json.dumps(plans, indent=1))
    shutil.copy(ds / "dataset.json", out / "dataset.json")
    shutil.copy(pre / DATASET / "dataset_fingerprint.json", out / "dataset_fingerprint.json")
    torch.save({"network_weights": net.state_dict(),
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset_json,
                              "device": "cpu"},
                "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2),
                "current_epoch": 1, "optimizer_state": None, "grad_scaler_state": None, "logging": {}},
               out / "fold_0" / "checkpoint_final.pth")
    return out


# A tiny MONAI bundle in the model zoo's layout; its "run" loops over the datalist without ignite.
MONAI_INFERENCE = {
    "imports": ["$import glob", "$import torch"],
    "bundle_root": ".",
    "output_dir": "$@bundle_root + '/eval'",
    "dataset_dir": "/data",
    "datalist": "$list(sorted(glob.glob(@dataset_dir + '/*_0000.nii.gz')))",
    "device": "$torch.device('cpu')",
    "network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                    "channels": [4, 8], "strides": [2], "num_res_units": 0},
    "network": "$@network_def.to(@device)",
    "preprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "image", "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True},
        {"_target_": "EnsureTyped", "keys": "image"}]},
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 1, "overlap": 0.25},
    "postprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg",
         "separate_folder": False, "resample": False, "output_dtype": "$torch.uint8", "print_log": False}]},
    "load_weights": "$@network.load_state_dict(torch.load(@bundle_root + '/models/model.pt', weights_only=True))",
    "run": ["$@load_weights", "$@network.eval()",
            "$[@postprocessing(dict(d, pred=@inferer(d['image'][None].to(@device), @network)[0])) "
            "for d in [@preprocessing({'image': f}) for f in @datalist]]"],
}


def build_monai_bundle(root: Path) -> Path:
    """A bundle with a randomly initialised (seeded) 3D U-Net: configs/metadata.json,
    configs/inference.json, models/model.pt (state dict)."""
    import torch
    from monai.networks.nets import UNet

    bundle = Path(root) / "tiny_dce_bundle"
    (bundle / "configs").mkdir(parents=True, exist_ok=True)
    (bundle / "models").mkdir(exist_ok=True)
    metadata = {"version": "0.1.0", "name": "tiny DCE test bundle", "monai_version": "1.6.1",
                "network_data_format": {
                    "inputs": {"image": {"type": "image", "format": "magnitude", "num_channels": 1,
                                         "spatial_shape": [32, 32, 32], "dtype": "float32", "value_range": [],
                                         "is_patch_data": True, "channel_def": {"0": "DCE first post-contrast"}}},
                    "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 2,
                                         "spatial_shape": [32, 32, 32], "dtype": "float32", "value_range": [0, 1],
                                         "is_patch_data": True, "channel_def": {"0": "background", "1": "tumor"}}}}}
    (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=1))
    (bundle / "configs" / "inference.json").write_text(json.dumps(MONAI_INFERENCE, indent=1))
    torch.manual_seed(0)
    net = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), num_res_units=0)
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    return bundle


def cached_nnunet() -> Path:
    """The tiny nnU-Net model folder, built once per version of this file and of nnU-Net in the
    temp folder (in a child process, see the module docstring), then reused."""
    import hashlib
    import subprocess
    import tempfile
    from importlib.metadata import version

    key = hashlib.sha256(Path(__file__).read_bytes() + version("nnunetv2").encode()).hexdigest()[:12]
    cache = Path(tempfile.gettempdir()) / f"breasttumorseg-test-nnunet-{key}"
    done = cache / "model_folder.txt"
    if not done.is_file():
        stage = Path(tempfile.mkdtemp(prefix=cache.name + "-staging-"))
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        run = subprocess.run([sys.executable, __file__, "nnunet", str(stage)], capture_output=True, text=True,
                             env=env, timeout=1800)
        if run.returncode != 0:
            raise RuntimeError(f"building the tiny nnU-Net model failed:\n{run.stderr[-3000:]}")
        (stage / "model_folder.txt").write_text(str(Path(run.stdout.strip().splitlines()[-1]).relative_to(stage)))
        try:
            os.replace(stage, cache)
        except OSError:  # built by another run meanwhile
            shutil.rmtree(stage, ignore_errors=True)
    return cache / done.read_text().strip()


if __name__ == "__main__":
    kind, where = sys.argv[1], Path(sys.argv[2])
    if kind == "nnunet":
        print(build_nnunet(where))
    else:
        raise SystemExit(f"unknown fixture {kind}")
