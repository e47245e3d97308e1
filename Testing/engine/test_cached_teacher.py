"""The cached teacher: the old model's whole-CT maps, cropped with each patch, stand in for running it per patch."""
import torch
from monai.data import MetaTensor

from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.network import NetworkConfig, build_network
from ciss_engine.training.cases import PreparedCase
from ciss_engine.training.incremental import old_model_outputs
from ciss_engine.training.sampler import PatchBatch, PatchSampler
from ciss_engine.training.step_data import analyse_step_cases, teacher_map_bytes

NUM_OLD = 2


def _case(shape: tuple[int, int, int], seed: int) -> PreparedCase:
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand((1, *shape), generator=generator)
    label = torch.zeros((1, *shape), dtype=torch.uint8)
    label[0, 2:6, 2:6, 2:6] = NUM_OLD + 1  # a new organ, so the sampler has a class to centre on
    return PreparedCase(name=f"case{seed}", image=MetaTensor(image), label=MetaTensor(label), sha256=str(seed))


def test_the_maps_are_cropped_at_the_image_patch_location():
    """Maps that encode each voxel's position must come back exactly where the image patch was taken."""
    cases = [_case((40, 36, 30), seed) for seed in (0, 1)]
    positions = [torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in c.image.shape[1:]), indexing="ij")) for c in cases]
    for case, grid in zip(cases, positions):
        case.image.set_array((grid[0] * 10_000 + grid[1] * 100 + grid[2])[None] + 1)  # unique per voxel, never the padding's 0
    sampler = PatchSampler(cases, num_classes=NUM_OLD + 2, patch_size=(16, 16, 16), batch_size=3, seed=0, maps=[g * 2 for g in positions])
    for iteration in range(5):
        batch = sampler.batch(iteration)
        code = batch.images[:, 0] - 1
        assert torch.equal(batch.maps[:, 0] * 10_000 + batch.maps[:, 1] * 100 + batch.maps[:, 2], code * 2)


def test_cached_outputs_equal_the_old_model_run_on_the_patch_within_bf16():
    """A CT of exactly one patch: the sliding-window pass sees the same input as the per-patch forward."""
    torch.manual_seed(0)
    network = build_network(NetworkConfig(init_filters=8, out_channels=1 + NUM_OLD)).eval()
    cases = [_case((32, 32, 32), 3)]
    step_data = analyse_step_cases(
        network, cases, num_old=NUM_OLD, num_new=1, patch_size=(32, 32, 32), device=torch.device("cpu"),
        fixed_threshold=None, sink=EventSink(ProgressMode.QUIET), keep_teacher=True,
    )
    assert step_data.teacher_maps[0].dtype is torch.bfloat16
    assert step_data.teacher_maps[0].nbytes == teacher_map_bytes(cases, NUM_OLD, network.feature_channels)
    sampler = PatchSampler(cases, num_classes=NUM_OLD + 2, patch_size=(32, 32, 32), batch_size=1, seed=0, maps=step_data.teacher_maps)
    cached = sampler.batch(0)
    online = PatchBatch(cached.images, cached.labels)
    for from_cache, computed in zip(old_model_outputs(cached, network, NUM_OLD), old_model_outputs(online, network, NUM_OLD)):
        assert from_cache.shape == computed.shape and from_cache.dtype is torch.float32
        scale = computed.abs().max()
        assert (from_cache - computed).abs().max() <= 0.02 * scale  # bf16 storage (and autocast) rounding
