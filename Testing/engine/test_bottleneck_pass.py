"""The replay buffer's source (training/bottleneck_pass.py): every bottleneck cell of a case once, with its class,
computed WINDOW_BATCH patches at a time, a lone last patch beside a copy of itself."""
import torch

from ciss_engine.events import EventSink
from ciss_engine.inference import WINDOW_BATCH
from ciss_engine.network import NetworkConfig, build_network
from ciss_engine.prototypes import IGNORE_INDEX
from ciss_engine.training.bottleneck_pass import bottleneck_rows

PATCH = (32, 32, 32)
CELLS = 4  # a 32³ patch's bottleneck is 4³ (three halvings)


def _case() -> tuple[torch.Tensor, torch.Tensor]:
    """An image of 3 × 2 × 1 patches after padding (the far end of two axes padded), labels with every class."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 90, 40, 32, generator=generator)
    labels = torch.randint(0, 3, (1, 90, 40, 32), generator=generator)
    labels[0, :8] = IGNORE_INDEX
    return image, labels


def _one_window_at_a_time(network, image: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The definition: each padded patch alone, its cells' rows with the class of the voxel each cell samples."""
    size_x, size_y = (-(-n // 32) * 32 for n in image.shape[1:3])  # z is one patch deep in these cases
    padded_image = torch.zeros(1, size_x, size_y, 32)
    padded_image[:, :image.shape[1], :image.shape[2]] = image
    padded_labels = torch.full((1, size_x, size_y, 32), IGNORE_INDEX)
    padded_labels[:, :image.shape[1], :image.shape[2]] = labels
    rows, classes = [], []
    for x in range(0, size_x, 32):
        for y in range(0, size_y, 32):
            with torch.no_grad():
                bottleneck = network.bottleneck(padded_image[None, :, x:x + 32, y:y + 32])[0]
            cells = padded_labels[0, x:x + 32:32 // CELLS, y:y + 32:32 // CELLS, ::32 // CELLS]
            kept = cells != IGNORE_INDEX
            rows.append(bottleneck.movedim(0, -1)[kept])
            classes.append(cells[kept])
    return torch.cat(rows), torch.cat(classes)


def test_every_cell_once_with_its_class_in_pairs_of_patches():
    torch.manual_seed(1)
    network = build_network(NetworkConfig(init_filters=8, out_channels=3))
    image, labels = _case()
    batches = []
    hook = network.backbone.convInit.register_forward_pre_hook(lambda _, inputs: batches.append(inputs[0].shape[0]))

    vectors, classes = bottleneck_rows(network, [(image, labels)], patch_size=PATCH, device=torch.device("cpu"), sink=EventSink("quiet"))
    hook.remove()

    expected_rows, expected_classes = _one_window_at_a_time(network, image, labels)
    assert torch.equal(classes, expected_classes)
    torch.testing.assert_close(vectors, expected_rows, rtol=1e-4, atol=1e-4)
    assert set(classes.tolist()) == {0, 1, 2}  # ignored voxels and the padding give no rows
    assert batches == [WINDOW_BATCH] * 3  # 6 patches, two at a time


def test_a_lone_last_patch_runs_beside_a_copy_and_each_patch_gives_its_rows_once():
    torch.manual_seed(1)
    network = build_network(NetworkConfig(init_filters=8, out_channels=3))
    image, labels = (tensor[:, :, :32] for tensor in _case())  # 3 × 1 × 1 patches: the second pair holds one
    batches = []
    hook = network.backbone.convInit.register_forward_pre_hook(lambda _, inputs: batches.append(inputs[0].shape[0]))

    vectors, classes = bottleneck_rows(network, [(image, labels)], patch_size=PATCH, device=torch.device("cpu"), sink=EventSink("quiet"))
    hook.remove()

    expected_rows, expected_classes = _one_window_at_a_time(network, image, labels)
    assert batches == [WINDOW_BATCH, WINDOW_BATCH]
    assert torch.equal(classes, expected_classes)  # no rows from the copy
    torch.testing.assert_close(vectors, expected_rows, rtol=1e-4, atol=1e-4)
