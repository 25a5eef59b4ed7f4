"""The official SGPN demo's pre- and post-processing, for ``FaceRestorer(fidelity="official")``.

Steps of ``demo_face_restoration.py`` (TencentYoutuResearch/FaceRestoration-sgpn), restated here:

- whole photos: faces are restored one after another, and each face is cropped from the image in
  which the faces before it are already pasted;
- crop: similarity (Umeyama, float64) from the five landmarks to the SGPN template, then
  ``cv2.warpAffine`` of the uint8 photo with ``INTER_CUBIC``, black outside the photo;
- the restored crop is blended with the LQ crop through a fixed mask (a filled anti-aliased rectangle
  26 px inside the crop, Gaussian-blurred twice, kernel 101, sigma 4), in [-1, 1], and truncated to
  uint8 (``astype``, no rounding);
- paste: ``cv2.warpAffine`` of that uint8 crop with the same matrix, ``INTER_CUBIC | WARP_INVERSE_MAP``,
  ``BORDER_TRANSPARENT``, into the photo itself: every photo pixel that maps into the crop window takes
  the crop's value (outside the mask, the re-sampled LQ crop); see :func:`paste_face` for OpenCV 5;
- aligned crops: resized to 512 with bilinear interpolation (the demo passes ``INTER_CUBIC`` in
  ``cv2.resize``'s ``dst`` position, so OpenCV's default ``INTER_LINEAR`` applies), restored, truncated,
  no mask.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

MASK_MARGIN = 26
MASK_BLUR_KERNEL = 101
MASK_BLUR_SIGMA = 4


def paste_mask(size: int = 512) -> np.ndarray:
    """The demo's blend mask ``[size, size]`` float32 in [0, 1]: 1 inside, fading over the outer ~40 px."""
    mask = np.zeros((size, size), np.float32)
    cv2.rectangle(mask, (MASK_MARGIN, MASK_MARGIN), (size - MASK_MARGIN, size - MASK_MARGIN), (1, 1, 1), -1,
                  cv2.LINE_AA)
    for _ in range(2):
        mask = cv2.GaussianBlur(mask, (MASK_BLUR_KERNEL, MASK_BLUR_KERNEL), MASK_BLUR_SIGMA)
    return mask


def crop_face(image_bgr8: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """Aligned uint8 crop: bicubic, black outside the photo."""
    return cv2.warpAffine(image_bgr8, affine, (size, size), flags=cv2.INTER_CUBIC)


def resize_aligned(image_bgr8: np.ndarray, size: int) -> np.ndarray:
    """An aligned face crop brought to the network size (bilinear, as the demo effectively does)."""
    return cv2.resize(image_bgr8, (size, size), interpolation=cv2.INTER_LINEAR)


def to_signed(crop_bgr8: np.ndarray) -> torch.Tensor:
    """uint8 BGR crop → ``[1, 3, S, S]`` RGB tensor in [-1, 1], as ``(x − 127.5) / 127.5``."""
    rgb = torch.from_numpy(np.ascontiguousarray(crop_bgr8[..., ::-1])).permute(2, 0, 1).float()
    return ((rgb - 127.5) / 127.5)[None]


def to_uint8(signed: torch.Tensor) -> np.ndarray:
    """``[1, 3, S, S]`` RGB in [-1, 1] → uint8 BGR, truncated like the demo (``astype('uint8')``)."""
    return (signed[0] * 127.5 + 127.5).cpu().numpy().astype(np.uint8).transpose(1, 2, 0)[..., ::-1].copy()


def blend(restored: torch.Tensor, lq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Restored face inside the mask, the LQ crop outside (all in [-1, 1])."""
    return restored * mask + lq * (1 - mask)


def paste_face(image_bgr8: np.ndarray, face_bgr8: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Warp a uint8 crop back into ``image_bgr8`` (in place, and returned) as the demo's bicubic
    ``BORDER_TRANSPARENT`` paste did with the OpenCV of its time (4.x).

    There, a photo pixel takes the bicubic value (taps past the crop edge reflected, BORDER_REFLECT_101)
    when the integer part of its source position, in OpenCV's 1/32-px fixed point, lies in the crop; the
    others keep their value. OpenCV 5's rewritten cubic warp also writes pixels outside the crop with
    ``BORDER_TRANSPARENT`` (opencv/opencv#29412), so the rule is applied here explicitly.
    """
    h, w = image_bgr8.shape[:2]
    size_y, size_x = face_bgr8.shape[:2]
    warped = cv2.warpAffine(face_bgr8, affine, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REFLECT_101)
    corners = cv2.transform(np.array([[[0, 0], [size_x, 0], [0, size_y], [size_x, size_y]]], np.float64),
                            cv2.invertAffineTransform(affine))[0]
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 3, (w, h))
    if x0 >= x1 or y0 >= y1:
        return image_bgr8
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    source = [np.floor(np.rint((affine[i, 0] * xs + affine[i, 1] * ys + affine[i, 2]) * 32) / 32) for i in range(2)]
    inside = (source[0] >= 0) & (source[0] < size_x) & (source[1] >= 0) & (source[1] < size_y)
    region = image_bgr8[y0:y1, x0:x1]
    region[inside] = warped[y0:y1, x0:x1][inside]
    return image_bgr8
