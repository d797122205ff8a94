"""Evaluation preprocessing (resize, centre crop, scale, normalise) without importing torchvision.

Importing torchvision pulls in ``torch._dynamo`` (over a second at start-up), and the default
backbone, EfficientNet-Lite0, needs nothing else from it. :class:`EvalTransform` performs the
classic ``Resize(resize) → CenterCrop(crop) → ToTensor() → Normalize(mean, std)`` chain on PIL
images with PIL and torch alone, producing the same tensors as torchvision's classes (a test
checks equality), and exposes ``crop_size`` / ``resize_size`` / ``mean`` / ``std`` /
``interpolation`` like torchvision's ``ImageClassification`` preset.

Example:
    >>> t = EvalTransform(crop=224, resize=256)
    >>> t(load_image("cat.jpg")).shape
    torch.Size([3, 224, 224])
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["EvalTransform"]

_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
             "lanczos": Image.LANCZOS}


class EvalTransform:
    """Resize the shorter side, crop the centre, scale to [0, 1] and normalise per channel.

    Args:
        crop: Side of the square centre crop.
        resize: Shorter side after resizing (the longer keeps the aspect ratio, rounded down).
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel standard deviation divided by.
        interpolation: ``"bilinear"`` (default), ``"bicubic"``, ``"nearest"`` or ``"lanczos"``.

    Raises:
        ValueError: For an unknown interpolation or sizes below 1.
    """

    def __init__(self, crop: int = 224, resize: int = 256, mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225), interpolation: str = "bilinear") -> None:
        if interpolation not in _RESAMPLE:
            raise ValueError(f"unknown interpolation {interpolation!r}; use one of {sorted(_RESAMPLE)}")
        if crop < 1 or resize < 1:
            raise ValueError(f"crop and resize must be >= 1, got {crop} and {resize}")
        self.crop_size = [int(crop)]
        self.resize_size = [int(resize)]
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.interpolation = interpolation
        self._mean = torch.tensor(self.mean).view(-1, 1, 1)
        self._std = torch.tensor(self.std).view(-1, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """``[3, crop, crop]`` float tensor of a PIL image (converted to RGB first)."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.resize_size[0], int(self.resize_size[0] * long / short)
        size = (new_short, new_long) if w <= h else (new_long, new_short)
        if size != (w, h):
            image = image.resize(size, _RESAMPLE[self.interpolation])
        w, h = image.size
        side = self.crop_size[0]
        if w < side or h < side:  # only when resize < crop: pad with black like torchvision
            canvas = Image.new("RGB", (max(w, side), max(h, side)))
            canvas.paste(image, ((max(w, side) - w) // 2, (max(h, side) - h) // 2))
            image, (w, h) = canvas, canvas.size
        top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
        image = image.crop((left, top, left + side, top + side))
        x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()
        return x.float().div(255).sub_(self._mean).div_(self._std)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(crop={self.crop_size[0]}, resize={self.resize_size[0]}, "
                f"mean={self.mean}, std={self.std}, interpolation={self.interpolation!r})")
