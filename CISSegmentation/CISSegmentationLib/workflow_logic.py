"""The actions both front ends (the desktop panel, the studio) run on one scene: segment a CT, learn new
organs, roll back, export a label map, and export DICOM RTSTRUCT and SEG through the engine's writers, so the
same result gives the same DICOM files whichever front end wrote them.

Each action that runs the engine returns an unstarted ``EngineJob``; the caller starts it and
polls it (a QTimer in Slicer, the event loop in the studio, ``wait()`` in tests). When the job ends,
the result is brought into the scene inside ``poll()`` and handed to ``on_done``. Bad input is
refused before any process starts.
"""
from __future__ import annotations

import dataclasses
import itertools
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ciss_engine.api.events import ExportDone, ForgettingGuard, LearnDone, SegmentDone
from ciss_engine.api.presets import DEFAULT_ADAPT_PRESET, DEFAULT_PRESET
from ciss_engine.registry import OrganClass

from .bundle_reader import BundleInfo, read_bundle_or_raise
from .engine_commands import DICOM_FORMATS, EngineLauncher, adapt_args, export_args, learn_args, rollback_args, segment_args
from .errors import InputError
from .job_runner import EngineJob, JobCallbacks, JobResult, JobState
from .segmentation_logic import RESULT_ROLE, SegmentationLogic
from .training_set import TrainingCase, TrainingFiles, TrainingSetLogic
from .volume_io import write_volume_nifti

if TYPE_CHECKING:
    from slicer import vtkMRMLScalarVolumeNode, vtkMRMLScene, vtkMRMLSegmentationNode


@dataclasses.dataclass(frozen=True)
class SegmentOutcome:
    """A finished ``segment`` run: the new segmentation node when it succeeded."""

    result: JobResult
    volume_node: vtkMRMLScalarVolumeNode
    segmentation_node: vtkMRMLSegmentationNode | None
    version: str | None


@dataclasses.dataclass(frozen=True)
class LearnOutcome:
    """A finished ``learn`` or ``adapt`` run: the new version (published, or saved as rejected), the version before,
    the guard event, and the files the step learned from."""

    result: JobResult
    new_version: str | None
    previous_version: str
    forgetting_guard: ForgettingGuard | None
    training: TrainingFiles

    @property
    def is_rejected(self) -> bool:
        return self.result.state is JobState.REJECTED


@dataclasses.dataclass(frozen=True)
class DicomExportOutcome:
    """A finished DICOM export: the files written (format → path) when it succeeded."""

    result: JobResult
    outputs: dict[str, Path]


class EngineJobFactory(Protocol):
    """What the workflow needs from an engine launcher (``EngineLauncher``; a remote runner in the studio could differ)."""

    def job(self, *args: str | Path, callbacks: JobCallbacks | None = None, cancel_grace_s: float = 10.0) -> EngineJob: ...


def _chain(callbacks: JobCallbacks | None, on_finished: Callable[[JobResult], None]) -> JobCallbacks:
    """The caller's callbacks, with ``on_finished`` first bringing the result into the scene."""
    callbacks = callbacks or JobCallbacks()

    def finished(result: JobResult) -> None:
        on_finished(result)
        if callbacks.on_finished:
            callbacks.on_finished(result)

    return dataclasses.replace(callbacks, on_finished=finished)


def _step_finished(bundle: BundleInfo, training: TrainingFiles, on_done: Callable[[LearnOutcome], None] | None) -> Callable[[JobResult], None]:
    """What ends a learn or adapt run: its outcome for ``on_done``."""

    def finished(result: JobResult) -> None:
        guard = result.last_event(ForgettingGuard)
        # A rejected step ends without a done event; its guard event names the version it wrote (AdaptDone is a LearnDone).
        new_version = result.done.version if isinstance(result.done, LearnDone) else guard.version if guard else None
        if on_done:
            on_done(LearnOutcome(result, new_version, bundle.current, guard, training))

    return finished


class WorkflowLogic:
    """Segment, Learn, roll back and export for one MRML scene, through the engine process.

    >>> logic = WorkflowLogic(scene)
    >>> job = logic.segment_job(bundle=read_bundle_or_raise(path), volume_node=ct, on_done=show).start()
    """

    def __init__(self, scene: vtkMRMLScene, *, launcher: EngineJobFactory | None = None, work_dir: Path | None = None) -> None:
        self.scene = scene
        self.launcher = launcher or EngineLauncher.default()
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="ciss-slicer-"))
        self.segmentation_logic = SegmentationLogic(scene)
        self.training_set = TrainingSetLogic(scene)
        self._run_numbers = itertools.count(1)

    def _run_dir(self, command: str) -> Path:
        folder = self.work_dir / f"run{next(self._run_numbers):03d}-{command}"
        folder.mkdir(parents=True)
        return folder

    def segment_job(self, *, bundle: BundleInfo, volume_node: vtkMRMLScalarVolumeNode | None, version: str | None = None, device: str = "auto",
                    show_3d: bool = True, callbacks: JobCallbacks | None = None, on_done: Callable[[SegmentOutcome], None] | None = None) -> EngineJob:
        """Segment all organs of ``bundle`` (``version``, default current) on ``volume_node``."""
        if volume_node is None:
            raise InputError("no CT chosen", "choose the CT to segment under Input CT")
        folder = self._run_dir("segment")
        image = write_volume_nifti(volume_node, folder / "ct.nii.gz")
        output = folder / "organs.nii.gz"

        def finished(result: JobResult) -> None:
            node, used = None, None
            if result.state is JobState.SUCCEEDED:
                used = result.done.version if isinstance(result.done, SegmentDone) else version or bundle.current
                organs = read_bundle_or_raise(bundle.path, used).organs
                node = self.segmentation_logic.import_label_map(output, volume_node, organs, name=f"{volume_node.GetName()} organs {used}",
                                                                show_3d=show_3d, role=RESULT_ROLE)
            if on_done:
                on_done(SegmentOutcome(result, volume_node, node, used))

        args = segment_args(bundle=bundle.path, image=image, output=output, version=version, device=device)
        return self.launcher.job(*args, callbacks=_chain(callbacks, finished))

    def learn_job(self, *, bundle: BundleInfo, new_organs: Sequence[OrganClass], cases: Sequence[TrainingCase] | None = None,
                  preset: str = DEFAULT_PRESET, iterations: int | None = None, device: str = "auto", accept_forgetting: bool = False,
                  engine_options: Sequence[str] = (), callbacks: JobCallbacks | None = None,
                  on_done: Callable[[LearnOutcome], None] | None = None) -> EngineJob:
        """Add ``new_organs`` to ``bundle`` from the painted cases (default: every case in the scene).

        The organs go to the engine in label order, the order in which it numbers them. A step the
        forgetting guard rejects is still saved as a version (status "rejected"); its ``new_version``
        is what ``rollback_job(..., accept_forgetting=True)`` accepts. ``engine_options`` go to
        ``ciss learn`` unchanged (e.g. ``--strategy mib``, ``--guard-threshold 0.95``).
        """
        new_organs = sorted(new_organs, key=lambda organ: organ.label)
        names = [organ.name for organ in new_organs]
        cases = self.training_set.find_cases(names) if cases is None else cases
        training = self.training_set.write_or_raise(cases, names, self._run_dir("learn"))
        args = learn_args(
            bundle=bundle.path, organs=[(o.name, o.rgb) for o in new_organs], images=training.images, labels=training.labels,
            preset=preset, iterations=iterations, device=device, accept_forgetting=accept_forgetting,
        )
        return self.launcher.job(*args, *engine_options, callbacks=_chain(callbacks, _step_finished(bundle, training, on_done)))

    def adapt_job(self, *, bundle: BundleInfo, cases: Sequence[TrainingCase] | None = None, preset: str = DEFAULT_ADAPT_PRESET, iterations: int | None = None,
                  device: str = "auto", accept_forgetting: bool = False, engine_options: Sequence[str] = (), callbacks: JobCallbacks | None = None,
                  on_done: Callable[[LearnOutcome], None] | None = None) -> EngineJob:
        """Adapt ``bundle``'s own organs to this site's CTs (``ciss adapt``, a domain step) from segmentations that
        hold some of them under the organs' names (default: every such segmentation in the scene but the engine's
        results): the site's contours imported from an RTSTRUCT, or a result copied and corrected. An organ drawn
        on no CT is not a label of the step: the current version pseudo-labels it and the forgetting guard keeps it.
        """
        names = bundle.registry.names
        cases = self.training_set.find_cases(names) if cases is None else cases
        training = self.training_set.write_or_raise(cases, names, self._run_dir("adapt"), every_organ=False)
        drawn = [(name, value) for value, name in enumerate(names, start=1) if any(case.counts[name] for case in training.counts)]
        args = adapt_args(bundle=bundle.path, organs=drawn, images=training.images, labels=training.labels, preset=preset,
                          iterations=iterations, device=device, accept_forgetting=accept_forgetting)
        return self.launcher.job(*args, *engine_options, callbacks=_chain(callbacks, _step_finished(bundle, training, on_done)))

    def rollback_job(self, *, bundle: BundleInfo, version: str, accept_forgetting: bool = False, callbacks: JobCallbacks | None = None) -> EngineJob:
        """Make ``version`` current: an earlier one (how a clinician rejects a step that passed the guard), or,
        with ``accept_forgetting``, a step the guard rejected, accepted knowingly without learning again.

        ``bundle`` must be read after the step, so that it lists ``version``.
        """
        bundle.version_info(version)
        return self.launcher.job(*rollback_args(bundle=bundle.path, version=version, accept_forgetting=accept_forgetting), callbacks=callbacks)

    def export_label_map(self, *, bundle: BundleInfo, segmentation_node: vtkMRMLSegmentationNode | None, volume_node: vtkMRMLScalarVolumeNode | None,
                         path: Path) -> Path:
        """NIfTI label map on the CT's grid with the bundle's label ids."""
        if segmentation_node is None or volume_node is None:
            raise InputError("nothing to export", "segment a CT first, then export its segmentation")
        return self.segmentation_logic.export_label_map(segmentation_node, volume_node, bundle.organs, path)

    def dicom_export_job(self, *, bundle: BundleInfo, segmentation_node: vtkMRMLSegmentationNode | None,
                         volume_node: vtkMRMLScalarVolumeNode | None, dicom_series: Path, output: Path, formats: Sequence[str] = DICOM_FORMATS,
                         callbacks: JobCallbacks | None = None, on_done: Callable[[DicomExportOutcome], None] | None = None) -> EngineJob:
        """``segmentation_node`` as DICOM ``formats`` (rtstruct, seg) in ``output``, written by ``ciss export``.

        ``dicom_series`` is the folder of the CT's DICOM files (the series ``volume_node`` was read from), which
        the files reference; ``bundle`` is the version that made the result (its organs, colours and codes).
        """
        if not Path(dicom_series).is_dir():
            raise InputError(f"the CT's DICOM folder {dicom_series} does not exist", "read the CT from its DICOM folder, or export a NIfTI label map instead")
        labels = self.export_label_map(bundle=bundle, segmentation_node=segmentation_node, volume_node=volume_node,
                                       path=self._run_dir("export") / "organs.nii.gz")
        args = export_args(labels=labels, ct=Path(dicom_series), bundle=bundle.path, output=Path(output), version=bundle.version, formats=formats)

        def finished(result: JobResult) -> None:
            written = result.done.outputs if result.state is JobState.SUCCEEDED and isinstance(result.done, ExportDone) else {}
            if on_done:
                on_done(DicomExportOutcome(result, {name: Path(path) for name, path in written.items()}))

        return self.launcher.job(*args, callbacks=_chain(callbacks, finished))

    def cleanup(self) -> None:
        """Remove the engine's input and output copies."""
        shutil.rmtree(self.work_dir, ignore_errors=True)
