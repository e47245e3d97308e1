"""Tiny real nnU-Net v2 trained-model folders made in the tests by nnunetv2's own code, so that tests of our
importer read what nnU-Net writes, not our idea of it (a hand-made look-alike would only pin our own reading):
the raw dataset in nnU-Net's layout (dataset.json by ``generate_dataset_json``), nnU-Net's fingerprint extractor,
experiment planner (PlainConvUNet or ResidualEncoderUNet) and preprocessor, and an ``nnUNetTrainer`` built on the
CPU whose own ``save_checkpoint`` writes ``fold_0/checkpoint_final.pth``. ``nnUNetPredictor`` runs the result.

Only the training schedule is ours: nnU-Net's (1000 epochs of SGD under heavy augmentation) takes hours, so a few
dozen Adam steps on nnU-Net's own batches (its dataset class, patch sampler, mirroring and target transforms) with
its own deep-supervised Dice + cross-entropy loss teach the tiny network enough organ structure that
``nnUNetPredictor``, mirroring included, finds the organs in a training CT.

nnunetv2 reads nnUNet_raw, nnUNet_preprocessed and nnUNet_results from the environment, keeps module state and
starts worker pools, so both the making and the prediction run in a subprocess (this file run as a script):
nothing leaks into the calling test process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DATASET_ID = 987
DATASET_NAME = f"Dataset{DATASET_ID:03d}_Phantom"
CONFIGURATION = "3d_fullres"
TRAINER = "nnUNetTrainer"
# Labels 1..4 of the phantom's label_seg8 (5..8 become background).
LABELS = {"background": 0, "spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4}
CHANNEL_NAMES = {"0": "CT"}
FILE_ENDING = ".nii.gz"
# nnU-Net's experiment planner class and the plans name it writes, per network architecture.
PLANNERS = {"PlainConvUNet": ("ExperimentPlanner", "nnUNetPlans"),
            "ResidualEncoderUNet": ("nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans")}
# The planner's own sizing, scaled down: 8 features doubling to at most 32 (nnU-Net: 32 up to 320); a target
# spacing coarser than TINY_PHANTOM's 6 mm (nnU-Net's option -overwrite_target_spacing), so that nnU-Net resamples
# on the way in and out as it does for most real CTs and a training step costs less; and a GPU memory target that
# leaves a patch ([32, 40, 40]) shorter than the resampled CT ([30, 36, 42]) along one axis and longer along the
# others, so the predictor both pads and slides two overlapping Gaussian-weighted tiles.
BASE_FEATURES = 8
MAX_FEATURES = 32
TARGET_SPACING_MM: float | None = 8.0  # None: nnU-Net's own choice (the median spacing, 6 mm here)
GPU_MEMORY_TARGET_GB = 0.05
# nnU-Net samples 10⁸ foreground intensities over the whole dataset whatever its size: 5·10⁷ draws per case for
# two cases took 29 s. 10⁵ give the CT normalisation's statistics within 1 HU (measured on two TINY_PHANTOM cases:
# mean 26.2 vs 26.4, std 41.4 vs 41.0, percentiles 0.5/99.5 -185/108 vs -185/107).
FINGERPRINT_SAMPLES = 100_000
LEARNING_RATE = 1e-2  # Adam
# Cross-entropy weight of class c: (background voxels / voxels of c) ** power (TINY_PHANTOM: 31, 34, 33, 71).
CLASS_WEIGHT_POWER = 0.65


def make_nnunet_model(root: Path, cases: list[Path], *, architecture: str = "PlainConvUNet", iterations: int = 60,
                      seed: int = 0) -> Path:
    """Return the trained model folder <root>/results/Dataset987_Phantom/nnUNetTrainer__<plans>__3d_fullres
    (holding plans.json, dataset.json, dataset_fingerprint.json, fold_0/checkpoint_final.pth), made from ``cases``
    (folders with image.nii.gz and label_seg8.nii.gz) under ``root`` (raw/, preprocessed/, results/; an earlier
    Dataset987 there is replaced), the same weights for the same arguments. <plans> is nnUNetPlans for
    "PlainConvUNet" (nnU-Net's ExperimentPlanner), nnUNetResEncUNetMPlans for "ResidualEncoderUNet"
    (nnUNetPlannerResEncM).

    ``iterations``: after 60 the mirrored prediction of a PlainConvUNet (seed 0, two TINY_PHANTOM cases) on a
    training CT holds all four organs; after 40 it has no gallbladder. A ResidualEncoderUNet after 60 has no
    gallbladder either (spleen and kidneys it has)."""
    if architecture not in PLANNERS:
        raise ValueError(f"architecture {architecture!r} is not one of {sorted(PLANNERS)}")
    root = Path(root).resolve()
    request = {"root": str(root), "cases": [str(Path(c).resolve()) for c in cases], "architecture": architecture,
               "iterations": int(iterations), "seed": int(seed)}
    _run_script("make", request, _nnunet_env(root))
    folder = root / "results" / DATASET_NAME / f"{TRAINER}__{PLANNERS[architecture][1]}__{CONFIGURATION}"
    if not (folder / "fold_0" / "checkpoint_final.pth").is_file():
        raise RuntimeError(f"nnU-Net made no checkpoint under {folder}")
    return folder


def predict_with_nnunet(model_folder: Path, image: Path, output: Path, *, fold: str = "0", mirroring: bool = True) -> None:
    """nnU-Net's own nnUNetPredictor (CPU) on one NIfTI CT, writing the label map NIfTI to ``output``."""
    request = {"model_folder": str(Path(model_folder).resolve()), "image": str(Path(image).resolve()),
               "output": str(Path(output).resolve()), "fold": str(fold), "mirroring": bool(mirroring)}
    _run_script("predict", request, _nnunet_env(None))


# One math thread; the fingerprint extractor's pool, which nnU-Net always spawns, gets one worker.
_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "nnUNet_n_proc_DA": "1",
               "nnUNet_def_n_proc": "1", "nnUNet_compile": "false"}


def _nnunet_env(root: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env.update(_THREAD_ENV)
    if root is not None:
        env.update({"nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
                    "nnUNet_results": str(root / "results")})
    return env


def _run_script(command: str, request: dict, env: dict[str, str]) -> str:
    """Run this file as a script in a fresh interpreter and return its stdout; raise with the tail of its output
    when it fails."""
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), command, json.dumps(request)],
                            env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"nnU-Net {command} failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
                           f"\n--- stdout tail ---\n{result.stdout[-2000:]}")
    return result.stdout


# ---------------------------------------------------------------------------------------------------------------
# The subprocess side: everything below imports nnunetv2 and runs only in the child interpreter.

def _make(request: dict) -> None:
    import random
    import shutil
    import time

    import numpy as np
    import SimpleITK as sitk
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
    from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

    torch.set_num_threads(1)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import nnUNetPlannerResEncM
    from nnunetv2.run.run_training import get_trainer_from_args
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets
    lap("import")

    seed = request["seed"]
    root = Path(request["root"])
    raw = root / "raw" / DATASET_NAME
    for folder in (raw, root / "preprocessed" / DATASET_NAME, root / "results" / DATASET_NAME):
        shutil.rmtree(folder, ignore_errors=True)
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir(parents=True)
    for index, case in enumerate(request["cases"]):
        identifier = f"phantom_{index:03d}"
        shutil.copyfile(Path(case) / "image.nii.gz", raw / "imagesTr" / f"{identifier}_0000{FILE_ENDING}")
        label = sitk.ReadImage(str(Path(case) / "label_seg8.nii.gz"))
        array = sitk.GetArrayFromImage(label).astype(np.uint8)
        array[array > max(LABELS.values())] = 0
        kept = sitk.GetImageFromArray(array)
        kept.CopyInformation(label)
        sitk.WriteImage(kept, str(raw / "labelsTr" / f"{identifier}{FILE_ENDING}"), useCompression=True)
    generate_dataset_json(str(raw), CHANNEL_NAMES, LABELS, len(request["cases"]), FILE_ENDING,
                          dataset_name=DATASET_NAME, description="CISSegmentation test phantom (labels 1..4)",
                          license="test data", converted_by="Testing/nnunet_models.py")
    lap("raw dataset")

    extractor = DatasetFingerprintExtractor(DATASET_ID, num_processes=1, verbose=False)
    extractor.show_progress_bar = False
    extractor.num_foreground_voxels_for_intensitystats = FINGERPRINT_SAMPLES
    extractor.run(overwrite_existing=True)
    lap("fingerprint")

    planner_name, plans_name = PLANNERS[request["architecture"]]
    planner_class = {"ExperimentPlanner": ExperimentPlanner, "nnUNetPlannerResEncM": nnUNetPlannerResEncM}[planner_name]
    planner = planner_class(DATASET_ID, gpu_memory_target_in_gb=GPU_MEMORY_TARGET_GB,
                            overwrite_target_spacing=[TARGET_SPACING_MM] * 3 if TARGET_SPACING_MM else None)
    planner.UNet_base_num_features = BASE_FEATURES
    planner.UNet_max_features_3d = planner.UNet_max_features_2d = MAX_FEATURES
    plans = planner.plan_experiment()
    if planner.plans_identifier != plans_name or CONFIGURATION not in plans["configurations"]:
        raise RuntimeError(f"planner {planner_name} wrote {planner.plans_identifier} with "
                           f"{sorted(plans['configurations'])}, not {plans_name} with {CONFIGURATION}")
    lap("plan")

    # nnU-Net's preprocessor, case by case as its run() does in a pool of spawned workers (5 s of imports saved).
    preprocessed = root / "preprocessed" / DATASET_NAME
    plans_manager = PlansManager(load_json(str(preprocessed / f"{plans_name}.json")))
    configuration_manager = plans_manager.get_configuration(CONFIGURATION)
    dataset_json = load_json(str(preprocessed / "dataset.json"))
    preprocessor = configuration_manager.preprocessor_class(verbose=False)
    (preprocessed / configuration_manager.data_identifier).mkdir()
    for key, files in get_filenames_of_train_images_and_targets(str(raw), dataset_json).items():
        preprocessor.run_case_save(str(preprocessed / configuration_manager.data_identifier / key), files["images"],
                                   files["label"], plans_manager, configuration_manager, dataset_json)
    lap("preprocess")

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    trainer = get_trainer_from_args(str(DATASET_ID), CONFIGURATION, 0, TRAINER, plans_name, False, torch.device("cpu"))
    trainer.initialize()
    # What nnU-Net's on_train_start records for inference (the mirroring axes go into the checkpoint) and copies
    # beside the folds.
    mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3]
    save_json(trainer.plans_manager.plans, str(Path(trainer.output_folder_base) / "plans.json"), sort_keys=False)
    save_json(trainer.dataset_json, str(Path(trainer.output_folder_base) / "dataset.json"), sort_keys=False)
    shutil.copyfile(Path(trainer.preprocessed_dataset_folder_base) / "dataset_fingerprint.json",
                    Path(trainer.output_folder_base) / "dataset_fingerprint.json")
    lap("trainer")

    # nnU-Net's own batches: its dataset class on its preprocessed arrays, its patch sampler (a third of the
    # patches centred on foreground) and its own transforms: the mirroring of its training augmentation (the
    # checkpoint tells the predictor to average over mirrored copies, which a network never shown mirrored CTs
    # answers with background), then its validation transforms (padding label -1 to 0, targets downsampled for
    # deep supervision). No other augmentation.
    dataset = trainer.dataset_class(trainer.preprocessed_dataset_folder)
    scales = trainer._get_deep_supervision_scales()
    transforms = ComposeTransforms([
        MirrorTransform(allowed_axes=mirror_axes),
        trainer.get_validation_transforms(scales, foreground_labels=trainer.label_manager.foreground_labels)])
    patch_size = trainer.configuration_manager.patch_size
    loader = nnUNetDataLoader(dataset, trainer.batch_size, patch_size, patch_size, trainer.label_manager,
                              oversample_foreground_percent=trainer.oversample_foreground_percent, transforms=transforms)
    # nnU-Net's own loss (deep supervision over Dice + cross-entropy), with the cross-entropy weighted against the
    # background: unweighted, a few dozen steps only teach "all background" (organs are 1.5 % of the voxels).
    counts = sum(np.bincount(np.asarray(dataset.load_case(key)[1]).ravel().clip(0), minlength=len(LABELS))
                 for key in dataset.identifiers)
    weights = (counts[0] / np.maximum(counts, 1)) ** CLASS_WEIGHT_POWER
    dice_and_ce = trainer.loss.loss if trainer.enable_deep_supervision else trainer.loss
    dice_and_ce.ce.weight = torch.tensor(weights, dtype=torch.float32)
    network = trainer.network
    network.train()
    optimizer = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE)
    losses = []
    for _ in range(request["iterations"]):
        batch = next(loader)
        optimizer.zero_grad(set_to_none=True)
        value = trainer.loss(network(batch["data"]), batch["target"])
        value.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
        optimizer.step()
        losses.append(round(float(value.detach()), 4))
    dice_and_ce.ce.weight = None
    lap("train")

    trainer.save_checkpoint(str(Path(trainer.output_folder) / "checkpoint_final.pth"))
    lap("save")
    print("NNUNET_MODELS " + json.dumps({"timings": timings, "losses": losses}))


def _predict(request: dict) -> None:
    import torch

    torch.set_num_threads(1)
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=request["mirroring"],
                                perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(request["model_folder"], use_folds=(request["fold"],),
                                                   checkpoint_name="checkpoint_final.pth")
    reader_writer = predictor.plans_manager.image_reader_writer_class()
    image, properties = reader_writer.read_images([request["image"]])
    segmentation = predictor.predict_single_npy_array(image, properties, None, None, False)
    Path(request["output"]).parent.mkdir(parents=True, exist_ok=True)
    reader_writer.write_seg(segmentation, request["output"], properties)


if __name__ == "__main__":
    {"make": _make, "predict": _predict}[sys.argv[1]](json.loads(sys.argv[2]))
