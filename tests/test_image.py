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


@pytest.mark.parametrize("channels", [1, 3, 6])
def test_any_channel_count_and_strided_frames_match_the_plain_permute(channels):
    frames = np.random.default_rng(1).integers(0, 256, (2, 6, 9, channels), dtype=np.uint8)
    expected = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    assert torch.allclose(image_to_tensor(frames), expected)
    assert torch.allclose(image_to_tensor(list(frames)), expected)
    strided = frames[:, ::2, ::3]  # a view, not contiguous
    assert torch.allclose(image_to_tensor(strided), expected[..., ::2, ::3])


def test_frames_of_other_shapes_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        image_to_tensor([np.zeros((4, 6, 3), np.uint8), np.zeros((4, 6, 1), np.uint8)])
    with pytest.raises(ValueError, match=r"got shape \(4, 6\)"):
        image_to_tensor(np.zeros((4, 6), np.uint8))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64, np.int16])
def test_hwc_to_chw_keeps_the_dtype_and_matches_the_plain_permute(dtype):
    # float32: flows and validity maps; float64 / int16 take the permuted copy, not cv2.split
    frames = (np.random.default_rng(2).standard_normal((3, 5, 7, 2)) * 50).astype(dtype)
    expected = torch.from_numpy(frames).permute(0, 3, 1, 2)
    cases = [(frames, expected), (list(frames), expected), (frames[:, ::2], expected[..., ::2, :])]
    for given, want in cases:
        out = hwc_to_chw(given)
        assert out.dtype == want.dtype and out.is_contiguous()
        assert torch.equal(out, want)
