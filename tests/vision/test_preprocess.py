"""kgzsl.vision.preprocess: the torchvision-free evaluation transform gives torchvision's tensors."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from kgzsl.vision.preprocess import EvalTransform


def _image(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    pixels[: h // 2] //= 3  # some structure, so resampling differences would show
    return Image.fromarray(pixels, "RGB").convert(mode)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(640, 480), (480, 640), (256, 256), (300, 7), (257, 1000), (100, 80), (224, 224)])
def test_equals_torchvision(size, interpolation):
    mean, std = (127 / 255,) * 3, (128 / 255,) * 3
    ours = EvalTransform(224, 256, mean, std, interpolation)
    ref = T.Compose([T.Resize(256, interpolation=T.InterpolationMode(interpolation)), T.CenterCrop(224),
                     T.ToTensor(), T.Normalize(mean, std)])
    image = _image(*size)
    assert torch.equal(ours(image), ref(image))


def test_crop_larger_than_resize_pads_like_torchvision():
    ours, ref = EvalTransform(64, 48), T.Compose([T.Resize(48), T.CenterCrop(64), T.ToTensor(),
                                                  T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    image = _image(90, 60, seed=2)
    assert torch.equal(ours(image), ref(image))


def test_other_modes_become_rgb_and_attributes():
    t = EvalTransform(32, 40, interpolation="bicubic")
    assert t(_image(50, 70, mode="L")).shape == (3, 32, 32)
    assert t(_image(50, 70, mode="RGBA")).shape == (3, 32, 32)
    assert t.crop_size == [32] and t.resize_size == [40] and "bicubic" in repr(t)
    with pytest.raises(ValueError, match="interpolation"):
        EvalTransform(interpolation="cubic")
