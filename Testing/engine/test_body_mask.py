"""The body a step's background patches are centred in (training/body_mask.py): the voxels brighter than the CT's
darkest, with what they enclose in each axial slice; the air around the patient is left out."""
import torch

from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.preprocessing import PreprocessingConfig
from ciss_engine.training.body_mask import body_mask
from ciss_engine.training.cases import prepare_cases


def test_the_body_holds_what_it_encloses_in_each_slice_and_not_the_air_around_it():
    image = torch.zeros(1, 12, 12, 4)
    image[0, 2:10, 2:10, :] = 0.4  # the body
    image[0, 4:7, 4:7, :] = 0.0  # a lung, as dark as the air outside
    image[0, 0, 0, 0] = 0.2  # one bright voxel outside, unconnected to the body
    body = body_mask(image)
    assert body.shape == (12, 12, 4) and body.dtype == torch.bool
    assert body[2:10, 2:10, :].all(), "the body and its lung"
    outside = torch.ones(12, 12, 4, dtype=torch.bool)
    outside[2:10, 2:10, :] = False
    assert body[outside].sum() == 1 and body[0, 0, 0]
    assert torch.equal(body_mask(image[0]), body)


def test_on_a_phantom_ct_every_organ_lies_in_the_body_and_the_air_around_it_does_not(phantom_cohort):
    case = phantom_cohort[0]
    [prepared] = prepare_cases([case / "image.nii.gz"], [case / "label_seg8.nii.gz"], value_to_class={v: v for v in range(1, 9)},
                               other_labels="error", config=PreprocessingConfig(), sink=EventSink(ProgressMode.QUIET))
    body = body_mask(prepared.image.as_tensor())
    organs = prepared.label.as_tensor()[0] > 0
    assert organs.any() and body[organs].all()
    assert not body[0, 0, :].any() and not body[-1, -1, :].any(), "the corners of each slice are air"
    assert 0.2 < body.float().mean() < 0.9
