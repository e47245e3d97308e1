"""Networks run channels-last on the CPU (network.placed): the same outputs, faster convolutions, layout-free bundles."""
import dataclasses

import pytest
import torch
from ciss_test_helpers import cancelling_sink

from ciss_engine.bundle import Bundle
from ciss_engine.cancellation import CancelToken
from ciss_engine.errors import Cancelled
from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.inference import load_network
from ciss_engine.network import LayoutFreeGroupNorm, NetworkConfig, build_network, placed
from ciss_engine.preprocessing import PreprocessingConfig
from ciss_engine.training.base import BaseTrainingRequest, train_base_bundle, work_dir_for
from ciss_engine.training.loop_config import LoopConfig

CPU = torch.device("cpu")
CHANNELS_LAST = torch.channels_last_3d


def _kernels(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The 3×3×3 convolution kernels, whose channels-last strides differ from the default ones (never none: a check
    over none would pass)."""
    kernels = {name: w for name, w in weights.items() if w.dim() == 5 and w.shape[-1] == 3 and w.shape[1] > 1}
    assert len(kernels) > 20
    return kernels


def test_a_placed_network_holds_channels_last_kernels_and_computes_the_same_outputs():
    torch.manual_seed(0)
    network = build_network(NetworkConfig(init_filters=8, out_channels=3)).eval()
    patch = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        before = network(patch)
        after = placed(network, CPU)(patch)
    kernels = _kernels(dict(network.named_parameters()))
    assert all(w.is_contiguous(memory_format=CHANNELS_LAST) and not w.is_contiguous() for w in kernels.values())
    assert torch.allclose(before, after, atol=1e-4 * float(before.abs().max())), "only the layout changes, not the values"
    other = placed(torch.nn.Sequential(torch.nn.Conv3d(4, 4, 3)), CPU)  # an imported network: checked against its source tool
    assert other[0].weight.is_contiguous(), "networks other than the engine's keep the default layout"


def test_group_norm_computes_channels_last_input_in_the_default_layout():
    """PyTorch's channels-last GroupNorm kernel sums less precisely: the engine's norms give exactly the default
    kernel's output, back in the input's layout."""
    torch.manual_seed(0)
    plain, layout_free = torch.nn.GroupNorm(4, 8), LayoutFreeGroupNorm(4, 8)
    layout_free.load_state_dict(plain.state_dict())
    x = 3 + torch.randn(2, 8, 16, 16, 16)
    channels_last = x.contiguous(memory_format=CHANNELS_LAST)
    out = layout_free(channels_last)
    assert torch.equal(out, plain(x)) and out.is_contiguous(memory_format=CHANNELS_LAST)
    assert torch.equal(layout_free(x), plain(x)) and layout_free(x).is_contiguous()
    network = build_network(NetworkConfig(init_filters=8, out_channels=3))
    norms = [type(m) for m in network.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) > 20 and set(norms) == {LayoutFreeGroupNorm}, "every norm of the engine's network"


def test_base_training_runs_channels_last_and_writes_a_layout_free_bundle(tmp_path, phantom_cohort):
    request = BaseTrainingRequest(
        images=[c / "image.nii.gz" for c in phantom_cohort[:2]], labels=[c / "label_seg8.nii.gz" for c in phantom_cohort[:2]],
        organs=[("spleen", 1, None), ("liver", 7, None)], output=tmp_path / "bundle",
        loop=LoopConfig(iterations=4, checkpoint_every=100), preprocessing=PreprocessingConfig(spacing_mm=(6.0, 6.0, 6.0), patch_size=(32, 32, 32)),
        init_filters=8, batch_size=1, seed=0, other_labels="background",
    )
    token = CancelToken()
    with pytest.raises(Cancelled):
        train_base_bundle(request, device=CPU, sink=cancelling_sink(token, stage="train", step=2), cancel=token)
    trained = torch.load(work_dir_for(request.output) / "checkpoint.pt", weights_only=True)["model"]
    assert all(w.is_contiguous(memory_format=CHANNELS_LAST) for w in _kernels(trained).values()), "the network trained channels-last"
    train_base_bundle(dataclasses.replace(request, resume=True), device=CPU, sink=EventSink(ProgressMode.QUIET), cancel=CancelToken())
    version = Bundle.open_or_raise(request.output).load()
    assert all(w.is_contiguous() for w in version.load_state_dict().values()), "a bundle's weights are saved in the default layout"
    loaded = load_network(version, CPU)
    assert all(w.is_contiguous(memory_format=CHANNELS_LAST) for w in _kernels(dict(loaded.named_parameters())).values()), \
        "segmenting and a step's teacher run the loaded network channels-last"
