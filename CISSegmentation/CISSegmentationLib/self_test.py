"""The whole workflow on a small phantom: the module's self-test in Slicer and the pytest suite on slicer-core.

Phantom → tiny base bundle (3 organs) → segment a CT → paint a new organ (the phantom's liver) in the
CT's training segmentation → learn it → segment again with the new version beside the old result →
export a label map. Sizes and iterations are tiny: it proves the pipeline and the geometry, not accuracy.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .bundle_reader import BundleInfo, new_organ_or_raise, read_bundle_or_raise
from .engine_commands import EngineLauncher, phantom_args
from .job_runner import EngineJob, JobResult, JobState
from .volume_io import read_label_array_or_raise, read_volume_nifti
from .workflow_logic import LearnOutcome, SegmentOutcome, WorkflowLogic

if TYPE_CHECKING:
    from slicer import vtkMRMLScalarVolumeNode, vtkMRMLScene, vtkMRMLSegmentationNode

PHANTOM_SHAPE = (64, 64, 48)
PHANTOM_SPACING_MM = 5.0  # coarse, so the small grid still holds the whole abdomen
BASE_ORGANS = "spleen=1,kidney_right=2,kidney_left=3"  # values in the phantom's seg8 labels
NEW_ORGAN, NEW_ORGAN_VALUE = "liver", 7
TINY_TRAINING = ("--iterations", "4", "--patch-size", "32", "--init-filters", "8", "--batch-size", "1", "--spacing", "5")


def run_or_raise(job: EngineJob, timeout_s: float = 1200) -> JobResult:
    """Start ``job``, wait for it, and raise with the engine's message and log unless it succeeded."""
    result = job.start().wait(timeout_s=timeout_s)
    if result.state is not JobState.SUCCEEDED:
        raise result.to_error()
    return result


@dataclasses.dataclass(frozen=True)
class PhantomBundle:
    cases: tuple[Path, ...]
    bundle: Path


def build_phantom_bundle(launcher: EngineLauncher, folder: Path) -> PhantomBundle:
    """Two phantom cases and a base bundle trained for a few iterations on the first."""
    cases_dir, bundle = folder / "phantom", folder / "bundle"
    run_or_raise(launcher.job(*phantom_args(output=cases_dir, cases=2, seed=0, shape=PHANTOM_SHAPE, spacing_mm=PHANTOM_SPACING_MM)))
    cases = tuple(sorted(p for p in cases_dir.iterdir() if p.is_dir()))
    run_or_raise(launcher.job(
        "train", "-i", cases[0] / "image.nii.gz", "-l", cases[0] / "label_seg8.nii.gz", "--organs", BASE_ORGANS,
        "--other-labels", "background", "-o", bundle, *TINY_TRAINING,
    ))
    return PhantomBundle(cases, bundle)


class WorkflowSelfTest:
    """The panel's steps, driven without a GUI on one scene."""

    def __init__(self, scene: vtkMRMLScene, work_dir: Path, *, launcher: EngineLauncher | None = None, log: Callable[[str], None] = print) -> None:
        self.scene = scene
        self.work_dir = Path(work_dir)
        self.log = log
        self.workflow = WorkflowLogic(scene, launcher=launcher, work_dir=self.work_dir / "runs")

    def load_case(self, case_dir: Path, name: str) -> tuple[vtkMRMLScalarVolumeNode, np.ndarray]:
        """The phantom CT as a volume node and its full label array (the clinician's 'truth')."""
        ct = read_volume_nifti(self.scene, case_dir / "image.nii.gz", name=name)
        return ct, read_label_array_or_raise(case_dir / "label_seg8.nii.gz", ct)

    def segment(self, bundle: BundleInfo, ct: vtkMRMLScalarVolumeNode, version: str | None = None) -> SegmentOutcome:
        outcomes: list[SegmentOutcome] = []
        run_or_raise(self.workflow.segment_job(bundle=bundle, volume_node=ct, version=version, device="cpu", on_done=outcomes.append))
        self.log(f"segmented {ct.GetName()} with version {outcomes[0].version}")
        return outcomes[0]

    def paint_new_organ(self, bundle: BundleInfo, segmentation_node: vtkMRMLSegmentationNode, ct: vtkMRMLScalarVolumeNode, labels: np.ndarray) -> int:
        """What the clinician does in Segment Editor: paint the new organ; returns its voxel count."""
        organ = new_organ_or_raise(bundle, NEW_ORGAN, None)
        segment_id = self.workflow.segmentation_logic.add_organ_segment(segmentation_node, organ)
        self.workflow.segmentation_logic.set_segment_mask(segmentation_node, segment_id, labels == NEW_ORGAN_VALUE, ct)
        return int(np.count_nonzero(labels == NEW_ORGAN_VALUE))

    def learn(self, bundle: BundleInfo, *, iterations: int = 2, accept_forgetting: bool = True) -> LearnOutcome:
        outcomes: list[LearnOutcome] = []
        organ = new_organ_or_raise(bundle, NEW_ORGAN, None)
        job = self.workflow.learn_job(bundle=bundle, new_organs=[organ], preset="quick", iterations=iterations, device="cpu",
                                      accept_forgetting=accept_forgetting, on_done=outcomes.append)
        run_or_raise(job)
        self.log(f"learned {NEW_ORGAN}: version {outcomes[0].new_version}, forgetting guard {outcomes[0].forgetting_guard}")
        return outcomes[0]

    def run_all(self, phantom: PhantomBundle) -> dict[str, object]:
        """Every step in order; returns what a test asserts on."""
        bundle = read_bundle_or_raise(phantom.bundle)
        ct, labels = self.load_case(phantom.cases[1], "phantom CT")
        before = self.segment(bundle, ct)
        training = self.workflow.training_set.training_segmentation(ct)
        painted = self.paint_new_organ(bundle, training, ct, labels)
        learned = self.learn(bundle)
        after_bundle = read_bundle_or_raise(phantom.bundle)
        after = self.segment(after_bundle, ct, learned.new_version)
        exported = self.workflow.export_label_map(bundle=after_bundle, segmentation_node=after.segmentation_node, volume_node=ct,
                                                  path=self.work_dir / "export" / "organs.nii.gz")
        return {"bundle": after_bundle, "ct": ct, "before": before, "after": after, "learned": learned, "training": training, "painted": painted,
                "exported": exported}
