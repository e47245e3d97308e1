"""A step's closing pass (training/prototype_pass.py): the global prototypes on the given labels and the network's
own labels of every voxel, both from one sliding-window pass over each whole CT."""
import torch

from ciss_engine.events import EventSink
from ciss_engine.network import NetworkConfig, build_network
from ciss_engine.training.prototype_pass import prototypes_and_predictions
from ciss_engine.training.step_common import whole_ct_labels

CLASSES = 3
PATCH = (32, 32, 32)


class _Case:
    """What whole_ct_labels reads of a prepared case."""

    def __init__(self, image: torch.Tensor) -> None:
        self.image = image


def test_one_pass_gives_the_guards_labels_and_the_prototypes_of_the_given_labels():
    torch.manual_seed(0)
    network = build_network(NetworkConfig(init_filters=8, out_channels=CLASSES)).eval()
    generator = torch.Generator().manual_seed(1)
    images = [torch.randn(1, 40, 36, 32, generator=generator) for _ in range(2)]
    labels = [torch.randint(0, CLASSES, (1, 40, 36, 32), generator=generator) for _ in range(2)]
    labels[1][labels[1] == 2] = 255  # ignored voxels count for no class
    patches = []
    hook = network.backbone.convInit.register_forward_pre_hook(lambda _, inputs: patches.append(inputs[0].shape[0]))

    prototypes, predictions = prototypes_and_predictions(network, list(zip(images, labels)), num_classes=CLASSES, patch_size=PATCH,
                                                         device=torch.device("cpu"), sink=EventSink("quiet"))
    one_pass = sum(patches)
    patches.clear()
    guard_labels = whole_ct_labels(network, [_Case(image) for image in images], patch_size=PATCH, device=torch.device("cpu"))
    hook.remove()

    assert one_pass == sum(patches), "the closing pass runs each window once, as the guard's labels alone do"
    assert all(torch.equal(mine, theirs) for mine, theirs in zip(predictions, guard_labels))
    expected_counts = sum(torch.bincount(label[label != 255].flatten(), minlength=CLASSES) for label in labels)
    assert torch.equal(prototypes.post.counts, expected_counts)  # the given labels, not the network's own
    assert not torch.equal(expected_counts, sum(torch.bincount(p.flatten().long(), minlength=CLASSES) for p in predictions))
