"""``ciss adapt``: a domain step end to end on phantom CTs of another "scanner" (HU offset, scale and noise):
the version, its replay buffer, organ contrast, the guard, resume, and the refusals."""
import dataclasses
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ciss_test_helpers import built_sampler_arguments, cancelling_sink, new_organ_labels, record_checksums, run_cli
from safetensors.torch import load_file, save_file

from ciss_engine.api.events import AdaptDone, parse_event
from ciss_engine.bundle import Bundle
from ciss_engine.cancellation import CancelToken
from ciss_engine.cli import build_parser
from ciss_engine.errors import Cancelled, ExitCode
from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.forgetting_guard import as_shown, pooled_dsc
from ciss_engine.inference import load_network
from ciss_engine.postprocessing import postprocessed_labels
from ciss_engine.preprocessing import PreprocessingConfig
from ciss_engine.training import adapt
from ciss_engine.training.adapt import AdaptRequest, _fingerprint, adapt_step, labelled_organs_or_raise
from ciss_engine.training.cases import prepare_cases
from ciss_engine.training.loop_config import ADAPT_ORGAN_CONTRAST, LoopConfig
from ciss_engine.training.step_common import learn_work_dir, whole_ct_labels

STEP_ARGS = ["--iterations", "3", "--batch-size", "1", "--setting", "buffer_per_class=20", "--accept-forgetting"]
LABELLED = [("spleen", 1), ("kidney_right", 2)]  # seg8 values; kidney_left and gallbladder get no labels
BOTTLENECK = 64  # 8 filters doubled at 3 downsamplings


@pytest.fixture()
def site(phantom_cohort, tmp_path):
    """Two phantom CTs as another scanner shows them (HU x 1.1 + 40, noise σ 15) and labels of two organs only."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for index, case in enumerate(phantom_cohort[2:4]):
        ct = nib.load(str(case / "image.nii.gz"))
        data = np.asarray(ct.dataobj, dtype=np.float32) * 1.1 + 40 + rng.normal(0, 15, ct.shape)
        images.append(tmp_path / f"site_ct_{index}.nii.gz")
        nib.save(nib.Nifti1Image(data.astype(np.float32), ct.affine), str(images[-1]))
        seg = nib.load(str(case / "label_seg8.nii.gz"))
        kept = np.where(np.isin(np.asarray(seg.dataobj), [1, 2]), np.asarray(seg.dataobj), 0).astype(np.uint8)
        labels.append(tmp_path / f"site_label_{index}.nii.gz")
        nib.save(nib.Nifti1Image(kept, seg.affine), str(labels[-1]))
    return images, labels


def _organs() -> str:
    return ",".join(f"{name}={value}" for name, value in LABELLED)


def test_adapt_writes_a_domain_version_with_its_replay_buffer(bundle, site, capsys):
    images, labels = site
    code = run_cli("adapt", "-b", bundle, "-i", *images, "-l", *labels, "--organs", _organs(), *STEP_ARGS, "--progress", "jsonl")
    assert code == 0
    out = capsys.readouterr()
    done = parse_event(out.out.strip().splitlines()[-1], "adapt")
    assert isinstance(done, AdaptDone) and done.version == "1.1.0" and done.extra == {}
    assert set(done.labelled_dsc) == {"spleen", "kidney_right"} and set(done.labelled_dsc["spleen"]) == {"before", "after"}
    assert set(done.forgetting_guard["agreement"]) == {"kidney_left", "gallbladder"}  # the guard keeps the organs without labels
    assert done.forgetting_guard["postprocessed"] == ["kidney_left", "gallbladder"]  # compared as `ciss segment` keeps them
    assert "drawn from the parent model on this step's CTs" in out.err
    handle = Bundle.open_or_raise(bundle)
    version, parent = handle.load(), handle.load("1.0.0")
    assert handle.current_version == "1.1.0" and version.registry.names == parent.registry.names
    step = version.history[-1]
    assert step["kind"] == "domain" and step["organs"] == [] and step["labelled_organs"] == ["spleen", "kidney_right"]
    assert step["labelled_dsc"] == done.labelled_dsc and step["forgetting_guard"] == done.forgetting_guard
    assert step["strategy"] == "dual_alignment" and step["strategy_settings"]["buffer_per_class"] == 20
    assert set(step["losses"]) == {"ce", "dice", "cna", "cra", "kd"} and version.settings.parent_version == "1.0.0"
    # Each weighted term's share of the gradient on the shared parameters, measured at iteration 0 and recorded.
    shares = step["gradient_shares"]
    assert set(shares) == {"ce", "dice", "cna", "cra", "kd"} and sum(shares.values()) == pytest.approx(1, abs=1e-3)
    measured = [parse_event(line, "adapt") for line in out.out.strip().splitlines() if '"gradient_shares"' in line]
    assert [(m.stage, m.iteration) for m in measured] == [("adapt", 0)] and {k: round(v, 4) for k, v in measured[0].shares.items()} == shares
    # The buffer: tensors only, per-class vectors and their classes, no voxels or positions; checksummed like the weights.
    path = version.path / "models" / "replay_buffer.safetensors"
    tensors = load_file(str(path))
    assert set(tensors) == {"replay_vectors", "replay_classes"}
    vectors, classes = tensors["replay_vectors"], tensors["replay_classes"]
    assert vectors.shape == (classes.numel(), BOTTLENECK) and bool(vectors.isfinite().all())
    assert torch.bincount(classes).max() <= 20 and step["replay_buffer"] == done.replay_buffer
    assert sum(step["replay_buffer"].values()) == classes.numel() and "background" in step["replay_buffer"]
    assert "models/replay_buffer.safetensors" in version.recorded_sha256
    loaded = version.load_replay_buffer()
    assert torch.equal(loaded.vectors, vectors) and torch.equal(loaded.classes, classes)
    # The feature mappings were trained but not exported: the weights fit the plain segmentation network.
    assert set(version.load_state_dict()) == set(parent.load_state_dict())
    assert not learn_work_dir(bundle).exists()


def test_the_labelled_organs_are_scored_as_ciss_segment_shows_them(painted_bundle, site):
    """DSC before → after of the labelled organs is that of the masks the user sees (each one-piece organ kept as its
    large pieces), as the guard judges the others: stray islands of the raw argmax never reach the user."""
    images, labels = site
    request = AdaptRequest(bundle=painted_bundle, images=images, labels=labels, organs=LABELLED, loop=LoopConfig(iterations=2), batch_size=1,
                           strategy_settings={"buffer_per_class": "10"}, accept_forgetting=True)
    cpu = torch.device("cpu")
    result = adapt_step(request, device=cpu, sink=EventSink(ProgressMode.QUIET), cancel=CancelToken())
    parent = Bundle.open_or_raise(painted_bundle).load("1.0.0")
    config = PreprocessingConfig.from_json(parent.settings.preprocessing)
    cases = prepare_cases(images, labels, value_to_class=labelled_organs_or_raise(parent.registry, LABELLED), other_labels="error", config=config,
                          sink=EventSink(ProgressMode.QUIET))
    references, organs, one_piece = [c.label.as_tensor()[0] for c in cases], [(1, "spleen"), (2, "kidney_right")], postprocessed_labels(parent)
    assert one_piece[:2] == [1, 2]
    raw_differs = False
    for moment, version in (("before", parent), ("after", result.version)):
        masks = whole_ct_labels(load_network(version, cpu), cases, patch_size=config.patch_size, device=cpu)
        shown = pooled_dsc(references, as_shown(masks, one_piece), organs)
        assert {name: dsc[moment] for name, dsc in result.labelled_dsc.items()} == shown
        raw_differs |= pooled_dsc(references, masks, organs) != shown
    assert raw_differs, "the painting models leave stray islands, so scoring the raw masks would show"


def test_a_domain_step_draws_its_patches_with_the_background_share_it_is_given(painted_bundle, site, monkeypatch):
    arguments = built_sampler_arguments(monkeypatch, adapt)
    images, labels = site
    request = AdaptRequest(bundle=painted_bundle, images=images, labels=labels, organs=LABELLED, loop=LoopConfig(iterations=1), batch_size=1,
                           strategy_settings={"buffer_per_class": "10", "background_share": "0.45", "background_in_body": "true"}, accept_forgetting=True)
    result = adapt_step(request, device=torch.device("cpu"), sink=EventSink(ProgressMode.QUIET), cancel=CancelToken())
    assert len(arguments) == 1 and (arguments[0]["background_share"], arguments[0]["background_in_body"]) == (0.45, True)
    recorded = result.version.settings.strategy
    assert (recorded["background_share"], recorded["background_in_body"]) == (0.45, True)


def test_organs_without_labels_take_their_prototypes_from_the_parents_pseudo_labels(painted_bundle, site):
    """The adapted prototypes are taken on Ỹ: an organ without labels that the parent finds on the step's CTs gets
    its row from the adapted features on the voxels the parent pseudo-labels, not the parent's stored row (a pass on
    the labels alone would find none of its voxels and keep that row)."""
    images, labels = site
    request = AdaptRequest(bundle=painted_bundle, images=images, labels=labels, organs=LABELLED, loop=LoopConfig(iterations=2), batch_size=1,
                           strategy_settings={"buffer_per_class": "10"}, accept_forgetting=True)
    result = adapt_step(request, device=torch.device("cpu"), sink=EventSink(ProgressMode.QUIET), cancel=CancelToken())
    parent = Bundle.open_or_raise(painted_bundle).load("1.0.0").load_prototypes()
    adapted = result.version.load_prototypes()
    unlabelled = slice(3, 5)  # kidney_left and gallbladder
    assert (adapted["counts"][unlabelled] > 0).all()
    assert not torch.equal(adapted["counts"][unlabelled], parent["counts"][unlabelled])
    assert not torch.equal(adapted["prototypes"][unlabelled], parent["prototypes"][unlabelled])


def test_the_buffer_is_read_from_the_parent_version(bundle, site):
    """A parent that stores a buffer hands it to the step: its (recognisable) rows reach the new version's buffer."""
    parent_dir = bundle / "versions" / "1.0.0"
    classes = torch.arange(5).repeat_interleave(20)
    save_file({"replay_vectors": torch.full((100, BOTTLENECK), 7.0) + classes[:, None].float(), "replay_classes": classes},
              str(parent_dir / "models" / "replay_buffer.safetensors"))
    record_checksums(parent_dir)
    images, labels = site
    lines = []

    class Log(EventSink):
        def log(self, message: str) -> None:
            lines.append(message)

    request = AdaptRequest(bundle=bundle, images=images, labels=labels, organs=LABELLED, loop=LoopConfig(iterations=2), batch_size=1,
                           strategy_settings={"buffer_per_class": "20"}, accept_forgetting=True)
    result = adapt_step(request, device=torch.device("cpu"), sink=Log(ProgressMode.QUIET), cancel=CancelToken())
    assert any("replay buffer version 1.0.0's 100 bottleneck vectors" in line for line in lines)
    stored = result.version.load_replay_buffer()
    from_parent = (stored.vectors == 7.0 + stored.classes[:, None].float()).all(1)
    assert 0 < int(from_parent.sum()) < stored.classes.numel()  # merged: part the parent's, part this site's


def test_adapt_with_finetune_stores_no_buffer(bundle, site):
    """… and takes ``--organ-contrast`` into the step it runs."""
    images, labels = site
    assert run_cli("adapt", "-b", bundle, "-i", *images, "-l", *labels, "--organs", _organs(), "--strategy", "finetune",
                   "--iterations", "2", "--batch-size", "1", "--organ-contrast", "0.4", "--accept-forgetting", "--quiet") == 0
    version = Bundle.open_or_raise(bundle).load()
    assert version.history[-1]["replay_buffer"] == {} and version.load_replay_buffer() is None
    assert set(version.history[-1]["losses"]) == {"ce", "dice"}
    assert version.settings.training["organ_contrast"] == 0.4


def test_cancel_then_resume_finishes_the_step_from_its_checkpoint(bundle, site, cudnn_left_free):
    images, labels = site
    request = AdaptRequest(bundle=bundle, images=images, labels=labels, organs=LABELLED, loop=LoopConfig(iterations=4, checkpoint_every=100),
                           batch_size=1, strategy_settings={"buffer_per_class": "10"}, accept_forgetting=True)
    token = CancelToken()
    with pytest.raises(Cancelled):
        adapt_step(request, device=torch.device("cpu"), sink=cancelling_sink(token, stage="adapt", step=2), cancel=token)
    assert Bundle.open_or_raise(bundle).versions() == ["1.0.0"] and len(list(learn_work_dir(bundle).glob("*/checkpoint.pt"))) == 1
    resumed = AdaptRequest(**{**request.__dict__, "resume": True})
    result = adapt_step(resumed, device=torch.device("cpu"), sink=EventSink(ProgressMode.QUIET), cancel=CancelToken())
    assert result.version.version == "1.1.0" and not learn_work_dir(bundle).exists()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark, "seed_run holds cuDNN to deterministic algorithms"
    again = adapt_step(resumed, device=torch.device("cpu"), sink=EventSink(ProgressMode.QUIET), cancel=CancelToken())
    assert again.version.version == "1.1.0" and again.labelled_dsc == result.labelled_dsc  # finished: reported, not redone
    assert again.guard == result.guard and again.guard.postprocessed == ("kidney_left", "gallbladder")  # the verdict read back whole


def _adapted_weights(bundle: Path, images: list[Path], labels: list[Path], organs: list[tuple[str, int]], organ_contrast: float,
                     augmentation: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """A two-iteration finetune step on a copy of ``bundle``: the new version's weights and training record."""
    request = AdaptRequest(bundle=bundle, images=images, labels=labels, organs=organs, strategy="finetune", batch_size=1, accept_forgetting=True,
                           loop=LoopConfig(iterations=2, checkpoint_every=100, augmentation=augmentation), organ_contrast=organ_contrast)
    version = adapt_step(request, device=torch.device("cpu"), sink=EventSink(ProgressMode.QUIET), cancel=CancelToken()).version
    return version.load_state_dict(), version.settings.to_json()["training"]


def test_adapt_draws_its_patches_with_the_requests_organ_contrast(bundle, site, phantom_cohort, tmp_path):
    """The share reaches the step's sampler (the same seed trains other weights), only for the labelled enhancing
    organs (a gallbladder-only step trains the same weights with or without), and the version records the share
    that ran: none with the augmentation off."""
    images, labels = site
    copies = [Path(shutil.copytree(bundle, tmp_path / f"copy_{i}")) for i in range(5)]
    plain, plain_record = _adapted_weights(copies[0], images, labels, LABELLED, 0.0)
    contrasted, record = _adapted_weights(copies[1], images, labels, LABELLED, 1.0)
    assert any(not torch.equal(plain[k], contrasted[k]) for k in plain)
    assert (plain_record["organ_contrast"], record["organ_contrast"]) == (0.0, 1.0)
    bile = [new_organ_labels(case, tmp_path / f"bile_{i}.nii.gz", {4: 1}) for i, case in enumerate(phantom_cohort[2:4])]
    plain, _ = _adapted_weights(copies[2], images, bile, [("gallbladder", 1)], 0.0)
    contrasted, _ = _adapted_weights(copies[3], images, bile, [("gallbladder", 1)], 1.0)
    assert all(torch.equal(plain[k], contrasted[k]) for k in plain)
    assert _adapted_weights(copies[4], images, labels, LABELLED, 1.0, augmentation=False)[1]["organ_contrast"] == 0.0


def test_adapt_organ_contrast_is_part_of_the_runs_fingerprint_and_the_cli_default(tmp_path):
    """A step resumed with another share must not continue the checkpoint; ``ciss adapt`` and the domain protocol's
    steps default to the chosen share."""
    request = AdaptRequest(bundle=tmp_path, images=[], labels=[], loop=LoopConfig(), strategy="finetune")
    assert _fingerprint(request, "1.0.0", []) != _fingerprint(dataclasses.replace(request, organ_contrast=0.3), "1.0.0", [])
    assert build_parser().parse_args(["adapt", "-b", "b", "-i", "i", "-l", "l"]).organ_contrast == ADAPT_ORGAN_CONTRAST
    assert build_parser().parse_args(["protocol", "--protocol", "domain", "--data", "phantom", "-o", str(tmp_path)]).step_organ_contrast == ADAPT_ORGAN_CONTRAST


def test_learn_refuses_dual_alignment(bundle, site, capsys):
    images, labels = site
    assert run_cli("learn", "-b", bundle, "--organ", "pancreas", "-i", images[0], "-l", labels[0], "--strategy", "dual_alignment", "--quiet") == ExitCode.INPUT_ERROR
    err = capsys.readouterr().err
    assert "adds no organ" in err and "ciss adapt" in err


@pytest.mark.parametrize(("extra", "message"), [
    (["--organs", "pancreas=1"], "pancreas are not in the bundle"),
    (["--organs", "spleen=1"], "holds values [2]"),  # kidney_right's voxels have no organ
    (["--organs", "spleen"], "write NAME=VALUE"),
    (["--strategy", "pcdd"], "'pcdd' is not a domain strategy"),
    (["--setting", "orcd_temperature=1"], "unknown setting 'orcd_temperature' of strategy dual_alignment"),
])
def test_adapt_refuses_bad_input_with_a_hint(bundle, site, capsys, extra, message):
    images, labels = site
    assert run_cli("adapt", "-b", bundle, "-i", *images, "-l", *labels, *(["--organs", _organs()] if "--organs" not in extra else []), *extra,
                   "--iterations", "1", "--quiet") == ExitCode.INPUT_ERROR
    assert message in capsys.readouterr().err
    assert Bundle.open_or_raise(bundle).versions() == ["1.0.0"]


def test_a_damaged_buffer_is_named(bundle, site):
    from ciss_engine.errors import BundleError

    parent_dir = bundle / "versions" / "1.0.0"
    save_file({"replay_vectors": torch.zeros(3, BOTTLENECK), "replay_classes": torch.tensor([0, 1, 99])}, str(parent_dir / "models" / "replay_buffer.safetensors"))
    record_checksums(parent_dir)
    with pytest.raises(BundleError, match="replay_buffer.safetensors is damaged: its class ids"):
        Bundle.open_or_raise(bundle).load().load_replay_buffer()
    assert json.loads((parent_dir / "configs" / "metadata.json").read_text())["ciss"]["files_sha256"]["models/replay_buffer.safetensors"]
    assert Path(parent_dir / "models" / "replay_buffer.safetensors").is_file()


def test_the_guard_rejects_an_adapt_that_forgets_and_the_parent_stays_current(painted_bundle, site, capsys):
    """The painting bundle's organs without labels (kidney_left, gallbladder) are in every result, so a finetune
    step moves them and a guard that accepts no change rejects it: exit 6, the version kept as rejected."""
    images, labels = site
    code = run_cli("adapt", "-b", painted_bundle, "-i", *images, "-l", *labels, "--organs", _organs(), "--strategy", "finetune",
                   "--iterations", "2", "--batch-size", "1", "--guard-threshold", "1.0", "--quiet")
    assert code == ExitCode.FORGETTING_REJECTED
    err = capsys.readouterr().err
    assert "saved as rejected" in err and "--accept-forgetting" in err
    handle = Bundle.open_or_raise(painted_bundle)
    assert handle.current_version == "1.0.0" and handle.load("1.1.0").status == "rejected"
    guard = handle.load("1.1.0").history[-1]["forgetting_guard"]
    assert guard["passed"] is False and set(guard["agreement"]) == {"kidney_left", "gallbladder"}
    assert run_cli("rollback", "-b", painted_bundle, "--to", "1.1.0", "--accept-forgetting", "--quiet") == 0
    assert handle.current_version == "1.1.0"
