"""Per-frame quality and temporal-stability metrics, and a streaming per-video accumulator.

Images are torch tensors ``(B, 3, H, W)`` (or ``(3, H, W)``) float RGB in ``[0, 1]``; every
per-image function returns one value per image, shape ``(B,)``.  :class:`VideoMetrics` also
takes ``(H, W, 3)`` uint8 numpy frames as the video readers yield them.

Definitions (``t`` is a frame index, ``o`` the output, ``r`` the reference):

- ``psnr``: ``10 log10(1 / MSE(o_t, r_t))`` over all pixels and channels, **capped at
  ``PSNR_CAP`` = 100 dB** so that identical frames (MSE 0, PSNR +inf) give a finite value
  and video averages (the plain mean of the per-frame values) stay finite and valid JSON.
  100 dB is an RMSE of 1e-5 of the range (an error of one 8-bit step on every pixel is
  48 dB), so only frames that are identical or nearly so reach the cap.
- ``ssim``: kornia's SSIM, Gaussian window 11 (sigma 1.5), ``padding="valid"`` as in Wang et
  al.'s reference code, mean over pixels and channels.
- ``ewarp``: the warping error of Lai et al. (ECCV 2018).  With the backward flow
  ``f = flow(r_t -> r_{t-1})`` computed on the *reference* (OpenCV DIS) and the validity map
  ``M`` of :func:`vid2vid_lite.nn.warp.occlusion_mask` (forward-backward check and motion
  boundaries), ``ewarp_t = sum(M * (o_t - warp(o_{t-1}, f))^2) / (3 * sum(M))``: the mean
  squared difference over valid pixels and the 3 channels, in ``[0, 1]`` RGB units.  Zero when
  no pixel is valid (Lai et al.'s code does the same).  ``ewarp_ref`` is the same on ``r``.
- ``tof``: TecoGAN's tOF: Farnebäck flow (OpenCV, TecoGAN's parameters, on BT.601 gray uint8)
  of the pair ``(o_{t-1}, o_t)`` and of ``(r_{t-1}, r_t)``; the per-pixel L2 norm of their
  difference, averaged over pixels (in pixels; TecoGAN's 8-pixel border crop is not applied).
- ``flicker``: with ``b(x)`` the mean BT.601 luma of a frame in ``[0, 1]``,
  ``flicker_t = |(b(o_t) - b(o_{t-1})) - (b(r_t) - b(r_{t-1}))|``: how much the output's
  frame-to-frame change of global brightness departs from the reference's.  It sees
  low-frequency (whole-frame) flicker; local flicker shows up in ``ewarp``.
- ``vmaf``: Netflix VMAF v0.6.1 (scores clipped to [0, 100]) from the optional ``vmaf-torch``
  package, on the limited-range BT.601 luma ``16 + 219 * Y`` that an H.264 file carries.
  Present only when ``vmaf_torch`` is importable (:func:`vmaf_available`).

The temporal metrics (``ewarp``, ``ewarp_ref``, ``tof``, ``flicker``) exist for frames
``t >= 1``; a video's value is the mean over its frame pairs (NaN for a one-frame video).

With a **guide** (``deflicker``: the reference is a per-frame processed video that flickers,
the guide the original it was made from), the motion that the temporal metrics take as the
truth is the guide's instead of the reference's (:class:`ReferenceMotion` of the guide's
frames): ``ewarp`` and ``ewarp_ref`` warp with the guide's DIS flow and validity, ``tof``
compares with the guide's Farnebäck flow, ``flicker`` with the guide's brightness changes.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

import cv2
import kornia
import numpy as np
import torch

from .flow import DISFlow
from .image import image_to_tensor, tensor_to_image
from .nn.warp import warp

PSNR_CAP = 100.0
SSIM_WINDOW = 11
# TecoGAN's Farnebäck parameters: pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags.
FARNEBACK_PARAMS = (0.5, 3, 15, 3, 5, 1.2, 0)

FRAME_METRICS = ("psnr", "ssim")
TEMPORAL_METRICS = ("ewarp", "ewarp_ref", "tof", "flicker")

Image = torch.Tensor | np.ndarray


# --------------------------------------------------------------------------- conversions


def to_tensor(image: Image) -> torch.Tensor:
    """``(H, W, 3)`` / ``(B, H, W, 3)`` uint8 array or ``(3, H, W)`` / ``(B, 3, H, W)`` float
    tensor -> ``(B, 3, H, W)`` float32 tensor in ``[0, 1]``."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.shape[-1] != 3 or image.ndim not in (3, 4):
            raise ValueError(f"expected (…, H, W, 3) uint8 frames, got {image.dtype} {image.shape}")
        # contiguous: a channels-last view makes kornia's depthwise SSIM filter ~4x slower
        t = image_to_tensor(image, signed=False)
    else:
        t = image.float()
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got {tuple(t.shape)}")
    return t


def to_gray_u8(image: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` or ``(3, H, W)`` float in [0, 1] -> ``(H, W)`` uint8 BT.601 gray."""
    return cv2.cvtColor(to_u8(image), cv2.COLOR_RGB2GRAY)


def to_u8(image: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` or ``(3, H, W)`` float in [0, 1] -> ``(H, W, 3)`` uint8 RGB (what DIS
    takes)."""
    return np.ascontiguousarray(tensor_to_image(image.reshape(1, 3, *image.shape[-2:]), signed=False)[0])


def luma(image: torch.Tensor) -> torch.Tensor:
    """BT.601 luma ``(B, 1, H, W)`` of ``(B, 3, H, W)`` RGB in [0, 1]."""
    return kornia.color.rgb_to_grayscale(image)


# --------------------------------------------------------------------------- per-frame metrics


def psnr(
    output: torch.Tensor, reference: torch.Tensor, max_val: float = 1.0, cap: float | None = PSNR_CAP
) -> torch.Tensor:
    """PSNR in dB per image, ``(B,)``, of ``(B, 3, H, W)`` images; capped at ``cap`` (None: inf
    for identical images)."""
    output, reference = to_tensor(output), to_tensor(reference)
    mse = ((output - reference) ** 2).flatten(1).mean(dim=1)
    # Per image (kornia.metrics.psnr pools the whole batch into one number).
    value = 10.0 * torch.log10(max_val**2 / mse)  # mse == 0 -> +inf
    return value if cap is None else value.clamp(max=cap)


def ssim(output: torch.Tensor, reference: torch.Tensor, window_size: int = SSIM_WINDOW) -> torch.Tensor:
    """SSIM per image, ``(B,)``, of ``(B, 3, H, W)`` images (kornia, ``padding="valid"``)."""
    output, reference = to_tensor(output), to_tensor(reference)
    # "valid" (Wang et al.'s reference) needs the window to fit; tiny images fall back to "same".
    padding = "valid" if min(output.shape[-2:]) >= window_size else "same"
    ssim_map = kornia.metrics.ssim(output, reference, window_size, max_val=1.0, padding=padding)
    return ssim_map.flatten(1).mean(dim=1)


# --------------------------------------------------------------------------- temporal metrics


def warping_error(
    current: torch.Tensor, previous: torch.Tensor, flow: torch.Tensor, validity: torch.Tensor
) -> torch.Tensor:
    """Lai et al.'s warping error per image, ``(B,)``.

    Args:
        current: frame t ``(B, 3, H, W)`` in [0, 1].
        previous: frame t-1 ``(B, 3, H, W)``.
        flow: backward flow t -> t-1 ``(B, 2, H, W)`` (from the reference video).
        validity: ``(B, 1, H, W)``, 1 where the flow is trusted (see ``occlusion_mask``).

    Returns ``sum(M (x_t - warp(x_{t-1}, f))^2) / (C sum(M))``; 0 where no pixel is valid.
    """
    current, previous = to_tensor(current), to_tensor(previous)
    validity = validity.to(current.dtype)
    sq = (current - warp(previous, flow.to(current.dtype))) ** 2 * validity
    count = validity.flatten(1).sum(dim=1) * current.shape[1]
    return sq.flatten(1).sum(dim=1) / count.clamp(min=1.0)


def farneback_flow(previous_gray: np.ndarray, current_gray: np.ndarray) -> np.ndarray:
    """Farnebäck flow ``(H, W, 2)`` float32 from ``previous`` to ``current`` (``(H, W)`` uint8),
    with TecoGAN's parameters."""
    return cv2.calcOpticalFlowFarneback(previous_gray, current_gray, None, *FARNEBACK_PARAMS)


def flow_difference(flow_a: np.ndarray, flow_b: np.ndarray) -> float:
    """Mean per-pixel L2 norm of the difference of two ``(H, W, 2)`` flows (in pixels)."""
    return float(np.linalg.norm(flow_a - flow_b, axis=-1).mean())


def tof(
    output: torch.Tensor,
    output_prev: torch.Tensor,
    reference: torch.Tensor,
    reference_prev: torch.Tensor,
) -> torch.Tensor:
    """TecoGAN's tOF per image pair, ``(B,)``: Farnebäck flow of ``(output_prev, output)`` vs of
    ``(reference_prev, reference)``, mean per-pixel L2 norm of the difference."""
    tensors = [to_tensor(x) for x in (output, output_prev, reference, reference_prev)]
    values = []
    for o, op, r, rp in zip(*tensors):
        flow_o = farneback_flow(to_gray_u8(op), to_gray_u8(o))
        flow_r = farneback_flow(to_gray_u8(rp), to_gray_u8(r))
        values.append(flow_difference(flow_o, flow_r))
    return torch.tensor(values, dtype=torch.float32)


def mean_brightness(image: torch.Tensor) -> torch.Tensor:
    """Mean BT.601 luma per image ``(B,)`` in [0, 1]."""
    return luma(to_tensor(image)).flatten(1).mean(dim=1)


def brightness_change(image: torch.Tensor, image_prev: torch.Tensor) -> torch.Tensor:
    """``b(x_t) - b(x_{t-1})`` per image ``(B,)`` with ``b`` = :func:`mean_brightness`."""
    return mean_brightness(image) - mean_brightness(image_prev)


def flicker(
    output: torch.Tensor,
    output_prev: torch.Tensor,
    reference: torch.Tensor,
    reference_prev: torch.Tensor,
) -> torch.Tensor:
    """Low-frequency flicker per pair ``(B,)``:
    ``|(b(o_t) - b(o_{t-1})) - (b(r_t) - b(r_{t-1}))|`` with ``b`` = :func:`mean_brightness`."""
    return (brightness_change(output, output_prev) - brightness_change(reference, reference_prev)).abs()


# --------------------------------------------------------------------------- VMAF (optional)


def vmaf_available() -> bool:
    """True when the optional ``vmaf-torch`` package (extra ``vmaf``) is importable."""
    return importlib.util.find_spec("vmaf_torch") is not None


class _StreamingVMAF:
    """VMAF over a stream: per frame it keeps only a few features, the score needs the
    next frame's motion (VMAF's ``motion2`` = min of the motion to the previous and next
    frame), so per-frame scores are final only in :meth:`scores`."""

    def __init__(self) -> None:
        from vmaf_torch import VMAF  # optional dependency

        self.model = VMAF(clip_score=True).eval()
        self.prev_y: torch.Tensor | None = None
        self.adm: list[torch.Tensor] = []
        self.vif: list[torch.Tensor] = []
        self.sad: list[torch.Tensor] = []  # mean |blur(y_t) - blur(y_{t-1})|; 0 for t = 0

    @staticmethod
    def _y(image: torch.Tensor) -> torch.Tensor:
        return 16.0 + 219.0 * luma(image)  # limited-range 8-bit luma, as decoded from H.264

    @torch.no_grad()
    def update(self, output: torch.Tensor, reference: torch.Tensor) -> None:
        ref_y, out_y = self._y(reference), self._y(output)
        self.adm.append(self.model.compute_adm_score(ref_y, out_y))
        self.vif.append(self.model.compute_vif_features(ref_y, out_y))
        if self.prev_y is None:
            self.sad.append(torch.zeros(1, 1))
        else:
            self.sad.append(self.model.compute_motion(torch.cat([self.prev_y, ref_y]))[1:])
        self.prev_y = ref_y

    @torch.no_grad()
    def scores(self) -> list[float]:
        if not self.adm:
            return []
        sad = torch.cat(self.sad)
        motion2 = torch.minimum(sad, torch.roll(sad, -1, 0))  # as vmaf_torch's Motion.motion2
        motion2[0] = 0
        motion2[-1] = sad[-1]
        score = self.model.predict(torch.cat(self.adm), motion2, torch.cat(self.vif))
        return score.flatten().tolist()


# --------------------------------------------------------------------------- streaming


@dataclass
class ReferenceMotion:
    """The motion of one reference frame pair (t-1, t), computed once and shared by every
    video (output, baseline, …) measured against that reference (or against a guide: the
    motion is then the guide's).

    flow: DIS backward flow t -> t-1 ``(1, 2, H, W)``.
    validity: ``(1, 1, H, W)`` forward-backward check and motion boundaries (1 = valid).
    farneback: Farnebäck flow t-1 -> t of the reference ``(H, W, 2)`` (for tOF).
    brightness: ``b(r_t) - b(r_{t-1})`` ``(1,)``, the change of :func:`mean_brightness` (for
        ``flicker``).
    """

    flow: torch.Tensor
    validity: torch.Tensor
    farneback: np.ndarray
    brightness: torch.Tensor


def reference_motion(reference: Image, reference_prev: Image, dis: DISFlow) -> ReferenceMotion:
    """Compute :class:`ReferenceMotion` for reference (or guide) frames t (``reference``) and t-1."""
    cur, prev = to_tensor(reference), to_tensor(reference_prev)
    flow, validity = dis.backward_with_validity(to_u8(cur), to_u8(prev))
    return ReferenceMotion(flow, validity, farneback_flow(to_gray_u8(prev), to_gray_u8(cur)), brightness_change(cur, prev))


class VideoMetrics:
    """Accumulate the metrics of one video against a reference, a frame at a time.

    Memory does not grow with the video length apart from one small row of numbers per frame:
    only the previous output and reference frames are kept.

    Args:
        dis: DIS flow on the reference for ``ewarp`` (default ``DISFlow("medium")``).
        vmaf: compute VMAF; None = when ``vmaf-torch`` is installed.

    Example::

        vm = VideoMetrics()
        for out, ref in zip(output_frames, reference_frames):
            vm.update(out, ref)
        rows, summary = vm.rows(), vm.summary()
    """

    def __init__(self, dis: DISFlow | None = None, vmaf: bool | None = None) -> None:
        self.dis = dis if dis is not None else DISFlow("medium")
        if vmaf is None:
            vmaf = vmaf_available()
        self._vmaf = _StreamingVMAF() if vmaf else None
        self._rows: list[dict[str, float]] = []
        self._prev_out: torch.Tensor | None = None
        self._prev_ref: torch.Tensor | None = None

    @property
    def metric_names(self) -> tuple[str, ...]:
        return FRAME_METRICS + TEMPORAL_METRICS + (("vmaf",) if self._vmaf else ())

    def __len__(self) -> int:
        return len(self._rows)

    @torch.no_grad()
    def update(
        self, output: Image, reference: Image, motion: ReferenceMotion | None = None
    ) -> dict[str, float]:
        """Add frame t.  ``output``/``reference``: ``(H, W, 3)`` uint8 or ``(3, H, W)`` float.

        ``motion``: the reference motion (t-1, t) when the caller already computed it (to share
        it between several videos), or a guide's motion; computed here from the reference when
        None.  Returns the frame's row (VMAF is
        filled in by :meth:`rows` / :meth:`summary`, as it needs the next frame).
        """
        out, ref = to_tensor(output), to_tensor(reference)
        if out.shape != ref.shape or out.shape[0] != 1:
            raise ValueError(f"output {tuple(out.shape)} and reference {tuple(ref.shape)} differ")
        row: dict[str, float] = {"frame": len(self._rows)}
        row["psnr"] = psnr(out, ref).item()
        row["ssim"] = ssim(out, ref).item()
        if self._prev_out is None:
            row.update({name: math.nan for name in TEMPORAL_METRICS})
        else:
            prev_out, prev_ref = self._prev_out, self._prev_ref
            if motion is None:
                motion = reference_motion(ref, prev_ref, self.dis)
            row["ewarp"] = warping_error(out, prev_out, motion.flow, motion.validity).item()
            row["ewarp_ref"] = warping_error(ref, prev_ref, motion.flow, motion.validity).item()
            flow_out = farneback_flow(to_gray_u8(prev_out), to_gray_u8(out))
            row["tof"] = flow_difference(flow_out, motion.farneback)
            row["flicker"] = (brightness_change(out, prev_out) - motion.brightness).abs().item()  # flicker() with a shared change
        if self._vmaf is not None:
            self._vmaf.update(out, ref)
        self._prev_out, self._prev_ref = out, ref
        self._rows.append(row)
        return row

    def rows(self) -> list[dict[str, float]]:
        """Per-frame rows ``{"frame", "psnr", …}``; temporal metrics are NaN for frame 0."""
        if self._vmaf is not None:
            for row, score in zip(self._rows, self._vmaf.scores()):
                row["vmaf"] = score
        return self._rows

    def summary(self) -> dict[str, float]:
        """Video averages: the mean over frames (``psnr``, ``ssim``, ``vmaf``) or over frame
        pairs (temporal metrics; NaN when the video has one frame or none)."""
        rows = self.rows()
        out = {}
        for name in self.metric_names:
            values = [r[name] for r in rows if not math.isnan(r[name])]
            out[name] = float(np.mean(values)) if values else math.nan
        return out
