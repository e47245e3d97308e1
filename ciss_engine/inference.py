"""All-organ segmentation with a bundle version: sliding window with Gaussian blending on the
network grid, then the label map goes back onto the input's own grid."""
from __future__ import annotations

import dataclasses
import itertools

import nibabel as nib
import numpy as np
import torch
from monai.inferers import sliding_window_inference

from .bundle import BundleVersion
from .device import autocast, autocast_dtype
from .network import AnyNetwork, build_network, network_config_from_json, placed
from .postprocessing import Postprocessing
from .preprocessing import PreprocessingConfig, image_to_network, label_from_logits_nnunet, label_to_input_grid

def load_network(version: BundleVersion, device: torch.device) -> AnyNetwork:
    """The version's network with its weights, in eval mode on ``device``."""
    from .errors import BundleError

    network = build_network(network_config_from_json(version.settings.network))
    try:
        network.load_state_dict(version.load_state_dict())
    except RuntimeError as error:
        metadata = version.path / "configs" / "metadata.json"
        raise BundleError(f"weights in {version.model_path} do not fit the network in {metadata}: {error}", "one of the two files is damaged; roll back to another version or retrain") from error
    return placed(network, device).eval()


# Patches per forward pass of whole-CT inference. On the CPU PyTorch runs a batch of one small 3D patch through its
# slow im2col convolution instead of oneDNN's: at 8 filters and 48³ a patch alone took 0.39 s, two together 0.10 s
# (benchmarks/RESULTS.md (ai)).
WINDOW_BATCH = 2


# ATen's rule (use_mkldnn): a batch of one goes through the slow convolution when its channels times its first two
# spatial sizes are at most this.
SLOW_LONE_CONVOLUTION_SIZE = 20480


def pads_lone_patches(network: torch.nn.Module, patch_size: tuple[int, int, int], device: torch.device) -> bool:
    """Whether a pass's lone last patch (an odd window count) should run beside a copy of itself.

    On the CPU only, and where PyTorch would run it through its slow im2col convolution: the input of the network's
    second convolution at full resolution decides. The engine's 8 filters at 48³ (18432): a lone patch costs 5.6–6.7 times a
    patch of a pair; 16 filters at 64³ (65536) take oneDNN's path alone, 0.85–0.94 times, so a copy would only add work
    (RESULTS.md (ai), (an)).
    """
    if device.type != "cpu":
        return False
    first = next((m for m in network.modules() if isinstance(m, torch.nn.Conv3d)), None)
    return first is not None and first.out_channels * patch_size[0] * patch_size[1] <= SLOW_LONE_CONVOLUTION_SIZE


def padded_to_window_batch(patches: torch.Tensor, pad: bool) -> tuple[torch.Tensor, int]:
    """``patches`` with copies of its last patch up to WINDOW_BATCH when ``pad`` (pads_lone_patches), and how many
    are real: the caller keeps only the first ``real`` rows of what the network returns."""
    real = patches.shape[0]
    if not pad or real >= WINDOW_BATCH:
        return patches, real
    return torch.cat([patches, patches[-1:].expand(WINDOW_BATCH - real, *patches.shape[1:])]), real


def sliding_window_outputs(
    network: AnyNetwork,
    image: torch.Tensor,
    *,
    patch_size: tuple[int, int, int],
    device: torch.device,
    with_features: bool = False,
    overlap: float = 0.5,
    blend: str = "gaussian",
    padding: str = "constant",
    mirroring_axes: tuple[int, ...] = (),
    amp: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (1, C, X, Y, Z) float32 on the CPU, and the features (1, K, X, Y, Z) when asked.

    Windows run on ``device``; stitching happens on the CPU, so a whole CT never has to fit the GPU.
    ``overlap``, ``blend`` and ``padding`` are MONAI's overlap, mode and padding_mode (an imported model keeps
    its own, preprocessing.PreprocessingConfig). ``mirroring_axes`` (grid axes 0-2): the logits are averaged over
    the patch and its flips along every non-empty subset of them, as nnU-Net predicts (logits only).
    """
    dtype = autocast_dtype(device, amp)
    if with_features and mirroring_axes:
        raise ValueError("mirroring averages logits only; features are taken without it")
    flips = [[2 + a for a in subset] for n in range(1, len(mirroring_axes) + 1) for subset in itertools.combinations(mirroring_axes, n)]
    pad = pads_lone_patches(network, patch_size, device)

    def predict(patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        patch, real = padded_to_window_batch(patch, pad)
        with autocast(device, dtype):
            logits, features = network.forward_with_features(patch)
            for dims in flips:
                logits = logits + network(patch.flip(dims)).flip(dims)
        logits = logits[:real].float() / (1 + len(flips))
        return (logits, features[:real].float()) if with_features else logits

    with torch.no_grad():
        outputs = sliding_window_inference(
            image.as_tensor() if hasattr(image, "as_tensor") else image,
            roi_size=patch_size,
            sw_batch_size=WINDOW_BATCH,
            predictor=predict,
            overlap=overlap,
            mode=blend,
            padding_mode=padding,
            sw_device=device,
            device=torch.device("cpu"),
        )
    if with_features:
        return outputs[0], outputs[1]
    return outputs, None


@dataclasses.dataclass(frozen=True)
class SegmentationResult:
    label: np.ndarray  # uint8 on the input's grid, values = bundle class ids
    affine: np.ndarray
    volumes_ml: dict[str, float]
    largest_piece_only: tuple[str, ...] = ()  # the organs kept as their largest connected piece (postprocessing.py)
    air_cleared: tuple[str, ...] = ()  # the organs whose voxels below postprocessing.AIR_HU became background


class Segmenter:
    """Segments CTs with one bundle version; the network is loaded once. ``postprocess``: clear air from the organs that
    never hold any and keep each one-piece organ's large connected pieces (postprocessing.py); off, the argmax as it
    is. A model imported from another tool (nnU-Net, a MONAI bundle) and the steps grown from it keep their outputs as
    the source tool gives them: a site has validated that tool's output, and its own pipeline decides its
    postprocessing."""

    def __init__(self, version: BundleVersion, device: torch.device, *, postprocess: bool = True) -> None:
        self.version = version
        self.device = device
        self.postprocessing = Postprocessing.of(version) if postprocess else Postprocessing()
        self.preprocessing = PreprocessingConfig.from_json(version.settings.preprocessing)
        self.network = load_network(version, device)

    def segment(self, image: nib.Nifti1Image) -> SegmentationResult:
        voxels = np.asarray(image.dataobj)  # read once: the network's input and the air rule's intensities
        tensor = image_to_network(image, self.preprocessing, voxels)
        pre = self.preprocessing
        logits, _ = sliding_window_outputs(
            self.network, tensor[None], patch_size=pre.patch_size, device=self.device,
            overlap=pre.window_overlap, blend=pre.window_blend, padding=pre.window_padding, mirroring_axes=pre.window_mirroring_axes,
        )
        if pre.resampling == "nnunet":
            label = label_from_logits_nnunet(logits[0], tensor, image)
        else:
            network_label = tensor.clone()
            network_label.set_array(logits[0].argmax(0, keepdim=True).to(torch.uint8))
            label = label_to_input_grid(network_label, image)
        label = self.postprocessing.applied(label, voxels)
        voxel_ml = abs(float(np.linalg.det(image.affine[:3, :3]))) / 1000.0
        counts = np.bincount(label.ravel(), minlength=self.version.registry.num_classes)
        volumes = {organ.name: round(float(counts[organ.label]) * voxel_ml, 3) for organ in self.version.registry.organs}
        organs = self.version.registry.organs
        return SegmentationResult(label=label, affine=image.affine, volumes_ml=volumes,
                                  largest_piece_only=tuple(o.name for o in organs if o.label in self.postprocessing.one_piece),
                                  air_cleared=tuple(o.name for o in organs if o.label in self.postprocessing.never_air))
