"""The one uint8 frame <-> float tensor conversion (vid2vid_lite/image.py)."""

import numpy as np
import pytest
import torch

from vid2vid_lite.image import hwc_to_chw, image_to_tensor, signed_to_unit, tensor_to_image, to_float


@pytest.mark.parametrize("signed", [True, False])
def test_frames_come_back_exactly_in_either_range(signed):
    frames = np.random.default_rng(0).integers(0, 256, (3, 5, 7, 2), dtype=np.uint8)
    x = image_to_tensor(frames, signed=signed)
    assert x.shape == (3, 2, 5, 7) and x.dtype == torch.float32 and x.is_contiguous()
    assert x.min() >= (-1.0 if signed else 0.0) and x.max() <= 1.0
    assert np.array_equal(tensor_to_image(x, signed=signed), frames)
    assert torch.equal(to_float(hwc_to_chw(frames), signed), x)  # the uint8 tensor path agrees


def test_one_frame_a_list_and_out_of_range_values():
    frame = np.full((4, 6, 3), 255, np.uint8)
    assert torch.equal(image_to_tensor(frame), torch.ones(1, 3, 4, 6))
    assert torch.equal(image_to_tensor([frame, frame]), torch.ones(2, 3, 4, 6))
    assert np.array_equal(tensor_to_image(torch.tensor([-3.0, 0.0, 3.0]).view(1, 3, 1, 1))[0, 0, 0], [0, 128, 255])
    assert torch.equal(signed_to_unit(torch.tensor([-2.0, 0.0, 1.0])), torch.tensor([0.0, 0.5, 1.0]))
