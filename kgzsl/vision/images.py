"""Robust image loading: any file PIL can read, or an image array, becomes an RGB image, or a clear error.

Image folders in the wild hold grayscale scans, 16-bit TIFFs, transparent PNGs, CMYK JPEGs,
half-downloaded files and text files named ``.jpg``. :func:`load_image` turns every readable one
into an 8-bit RGB :class:`PIL.Image.Image` (EXIF orientation applied) and every unreadable one into
an :class:`ImageLoadError` that names the file and says what to do. Images already in memory are
taken too: a file's encoded bytes (an upload, an open file, base64 text or a data URL), PIL images, numpy arrays (``HxWx3``, ``HxWx4``, ``HxW``; channels last) and tensors
(``[3, H, W]``; channels first), uint8 or float in [0, 1]. :func:`load_batch` applies a backbone's
preprocessing to many images and keeps going past the bad ones.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import os
import re
import warnings
from pathlib import Path
from typing import BinaryIO, Callable, Sequence, Union

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from kgzsl.errors import InputError

__all__ = ["ImageLoadError", "ImageSource", "load_image", "load_batch", "is_tensor_batch", "describe_image",
           "is_url", "decode_base64"]

logger = logging.getLogger(__name__)

ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image, np.ndarray, torch.Tensor]

# Modes whose values are not 0..255 integers; they are rescaled by their actual value range.
_WIDE_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


class ImageLoadError(InputError):
    """An image could not be read; the message names the input and how to fix it.

    Attributes:
        source: The path (or a description of the in-memory image) that failed.
    """

    def __init__(self, source: str, problem: str, fix: str) -> None:
        self.source = source
        super().__init__(f"cannot load image {source}: {problem}; {fix}")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert a decoded image of any PIL mode to 8-bit RGB."""
    if im.mode in _WIDE_MODES:
        # A plain clip would turn most 16-bit images white: stretch the used range to 0..255.
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.clip(arr, 0.0, 255.0)
        return Image.fromarray(np.rint(arr).astype(np.uint8)).convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")  # premultiplied 'RGBa'/'La' and palette transparency included
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # RGB is returned as is: nothing downstream draws on the image (resizing makes a new one)
    return im if im.mode == "RGB" else im.convert("RGB")  # L, 1, P, CMYK, YCbCr ...


def _finish(im: Image.Image, name: str) -> Image.Image:
    """Apply EXIF orientation and convert to RGB, turning PIL failures into ImageLoadError."""
    try:
        if im.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # exif_transpose copies even when upright
            im = ImageOps.exif_transpose(im)
    except Exception as exc:  # a corrupt EXIF block should not lose the picture
        logger.warning("ignoring unreadable EXIF orientation of %s: %s", name, exc)
    try:
        im.load()  # a lazily opened image given by the caller fails here, not later
        return _to_rgb(im)
    except (ValueError, OSError) as exc:
        raise ImageLoadError(name, f"mode {im.mode!r} cannot be converted to RGB ({exc})",
                             "re-save it as an RGB or grayscale PNG/JPEG") from exc


_URL = re.compile(r"(?i)^\s*[a-z][a-z0-9+.-]+://")


def is_url(text: str) -> bool:
    """Whether ``text`` is a URL (``https://...``, ``s3://...``): kgzsl fetches nothing from the network."""
    return bool(_URL.match(text))


_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")
_MIN_BASE64 = 64  # characters: shorter text is a path (no image file encodes into fewer)
_LONGEST_NAME = 300  # characters of base64 or other long text shown in records and messages
_LONGEST_PATH = 4096  # PATH_MAX on Linux: longer text is no path


def decode_base64(text: str) -> bytes:
    """The bytes of base64 text, or of a data URL (``data:image/png;base64,...``); whitespace is ignored.

    Raises:
        ValueError: If the text is not valid base64.
    """
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    return base64.b64decode("".join(text.split()), validate=True)


def _encoded(text: str) -> bool:
    """Whether a string is an image's content (a data URL, or long base64 text naming no file), as
    Hugging Face's ``load_image`` takes strings, rather than a path."""
    if text.startswith("data:"):
        return True
    if len(text) < _MIN_BASE64 or not _BASE64.match(text):
        return False
    try:
        return not os.path.exists(text)
    except (OSError, ValueError):  # too long for a path
        return True


def _text_content(text: str) -> bytes | None:
    """The bytes a data URL or base64 text holds; None for text that is no valid base64 (a path).

    Raises:
        ImageLoadError: For a data URL that is not valid base64.
    """
    if not _encoded(text):
        return None
    try:
        return decode_base64(text)
    except ValueError as exc:
        if text.startswith("data:"):
            raise ImageLoadError(describe_image(text), f"not valid base64 ({exc})",
                                 "pass the image file's bytes base64-encoded, or a path") from None
        return None


def describe_image(source: object) -> str:
    """A short name for an image input, for records and messages: its path, or its kind and shape."""
    if isinstance(source, str) and source.startswith("data:"):
        return f"<data URL, {len(source):,} characters>"
    if isinstance(source, str) and len(source) > _LONGEST_NAME and _BASE64.match(source):
        return f"<base64 text, {len(source):,} characters>"
    if isinstance(source, (str, os.PathLike)):
        text = str(source)  # a path in full; text longer than any path the system takes, cut
        return text if len(text) <= _LONGEST_PATH else text[:_LONGEST_NAME] + "..."
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source):,} bytes>"
    if callable(getattr(source, "read", None)):
        return f"<file {getattr(source, 'name', type(source).__name__)}>"
    if isinstance(source, (np.ndarray, torch.Tensor)):
        kind = "array" if isinstance(source, np.ndarray) else "tensor"
        dtype = str(source.dtype).removeprefix("torch.")
        return f"<{kind} {'x'.join(str(n) for n in source.shape) or 'scalar'} {dtype}>"
    return type(source).__name__


def _check_size(name: str, width: int, height: int, max_pixels: int, max_aspect_ratio: float) -> None:
    if width * height > max_pixels:
        raise ImageLoadError(name, f"{width}x{height} = {width * height:,} pixels exceeds max_pixels={max_pixels:,}",
                             "downscale it, or raise max_pixels if trusted")
    if min(width, height) < 1:
        raise ImageLoadError(name, f"the image is empty ({width}x{height} pixels)", "pass an image with pixels")
    if max(width, height) > max_aspect_ratio * min(width, height):
        raise ImageLoadError(
            name, f"{width}x{height} is too elongated (aspect ratio above {max_aspect_ratio:g}:1; "
            "resizing its short side to the model's input size would need huge memory)",
            "crop it to a less extreme shape (in Python, load_image's max_aspect_ratio raises the limit)")


_ARRAY_FIX = ("pass one image as an HxWx3, HxWx4 or HxW numpy array or a [3, H, W] tensor, a list of them, "
              "or a [B, 3, H, W] batch already transformed with the backbone's transform")


def _from_array(source: np.ndarray | torch.Tensor, max_pixels: int, max_aspect_ratio: float) -> Image.Image:
    """An in-memory image array (numpy channels last, torch channels first) as 8-bit RGB."""
    name = describe_image(source)
    if isinstance(source, torch.Tensor):
        if source.ndim == 3 and source.size(0) not in (1, 3, 4):
            raise ImageLoadError(name, "a 3-D tensor must be [C, H, W] with 1, 3 or 4 channels (channels first)",
                                 _ARRAY_FIX)
        t = source.detach().cpu()
        t = t.permute(1, 2, 0) if t.ndim == 3 else t
        arr = (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t).numpy()
    else:
        arr = source
        if arr.ndim == 3 and arr.shape[2] not in (1, 3, 4):
            raise ImageLoadError(name, "a 3-D array must be HxWxC with 1, 3 or 4 channels (channels last)", _ARRAY_FIX)
    if arr.ndim not in (2, 3):
        raise ImageLoadError(name, f"a {arr.ndim}-D array is not one image", _ARRAY_FIX)
    height, width = arr.shape[:2]
    _check_size(name, width, height, max_pixels, max_aspect_ratio)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype.kind == "f":
        lo, hi = (float(arr.min()), float(arr.max())) if np.isfinite(arr).all() else (math.nan, math.nan)
        if not (0.0 <= lo and hi <= 1.0):
            raise ImageLoadError(name, f"float pixel values must lie in [0, 1], got {lo:g}..{hi:g}",
                                 "scale it to [0, 1] (or pass uint8 0..255); a normalised tensor is a "
                                 "[B, 3, H, W] batch already transformed")
        arr = np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ImageLoadError(name, f"pixel type {arr.dtype} is not supported", "convert it to uint8 (0..255) "
                             "or to float in [0, 1]")
    arr = np.ascontiguousarray(arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
    return _finish(Image.fromarray(arr), name)


def load_image(source: ImageSource, max_pixels: int = 100_000_000, max_aspect_ratio: float = 100.0) -> Image.Image:
    """Load an image file (or take an image in memory) and return it as 8-bit RGB.

    The image size is checked from the file header before any pixel is decoded, then the whole
    file is decoded so that truncated files fail here rather than later.

    Args:
        source: A path to an image file, the bytes of one (an upload; decoded in memory, with the
            same checks), an open binary file (``io.BytesIO`` included), the file's bytes as base64
            text or a data URL (``data:image/png;base64,...``, as Hugging Face's ``load_image``
            takes them), an already opened :class:`PIL.Image.Image`, a numpy array
            (``HxWx3``, ``HxWx4`` or ``HxW``) or a tensor (``[3, H, W]``, ``[4, H, W]``,
            ``[1, H, W]`` or ``[H, W]``), uint8 or float in [0, 1].
        max_pixels: Refuse files whose header claims more pixels than this (decompression bombs).
        max_aspect_ratio: Refuse files whose longer side is more than this many times the shorter
            one: resizing the short side of a 20000x1 image to a backbone's 224 pixels would need
            tens of GB, although the file itself is tiny.

    Returns:
        A fully loaded RGB image. Transparent areas are composited on white; 16-bit and float
        images are scaled to 0..255 by their value range; EXIF orientation is applied.

    Raises:
        ImageLoadError: If the path is missing, a directory or empty (or the bytes are), is not an image, is
            truncated or corrupt, is larger than ``max_pixels`` or more elongated than
            ``max_aspect_ratio``; or an array is not one image (shape), has float values outside
            [0, 1] or another pixel type than uint8, float or bool.
    """
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return _from_array(source, max_pixels, max_aspect_ratio)
    if isinstance(source, Image.Image):
        name = f"<PIL image mode={source.mode} size={source.size}>"
        try:
            source.load()  # a closed image fails here, not as "mode 'RGB' cannot be converted to RGB"
        except ValueError as exc:
            if "closed" in str(exc):
                raise ImageLoadError(name, "the PIL image is closed",
                                     "pass it before closing it, or open it again") from None
        except OSError:  # a truncated file behind the image: _finish names it as before
            pass
        return _finish(source, name)
    data = _text_content(source) if isinstance(source, str) else None
    if data is not None:  # an image's content as text, as Hugging Face takes it
        name = describe_image(source)
        if not data:
            raise ImageLoadError(name, "no data (0 bytes)", "send the image file's content")
        return _decode(io.BytesIO(data), name, max_pixels, max_aspect_ratio)
    if callable(getattr(source, "read", None)):  # an open file, io.BytesIO
        name = describe_image(source)
        try:
            data = source.read()
        except (OSError, ValueError) as exc:
            raise ImageLoadError(name, f"cannot read it ({exc})", "pass an open, readable file") from None
        if not isinstance(data, (bytes, bytearray)):
            raise ImageLoadError(name, "a text file object", "open the file in binary mode ('rb')")
        if not data:
            raise ImageLoadError(name, "no data (0 bytes)", "send the image file's content")
        return _decode(io.BytesIO(data), name, max_pixels, max_aspect_ratio)
    if isinstance(source, (bytes, bytearray)):
        name = describe_image(source)
        if not source:
            raise ImageLoadError(name, "no data (0 bytes)", "send the image file's content")
        return _decode(io.BytesIO(source), name, max_pixels, max_aspect_ratio)
    if not isinstance(source, (str, os.PathLike)):
        raise ImageLoadError(describe_image(source), f"unsupported input type {type(source).__name__}",
                             "pass a path, image bytes, a PIL image, a numpy array or a tensor")
    if isinstance(source, str) and is_url(source):
        raise ImageLoadError(source, "a URL: kgzsl does not fetch images from the network",
                             "download the image and pass the file, or its bytes")
    path = Path(source)
    name = describe_image(source)
    try:
        path.stat()
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:  # a name too long for the system, a NUL byte
        raise ImageLoadError(name, f"not a usable path ({getattr(exc, 'strerror', None) or exc})",
                             "pass a file's path, or the image's bytes") from None
    if not path.exists():
        if path.is_symlink():
            raise ImageLoadError(name, f"a broken symbolic link (its target {os.readlink(path)} is missing)",
                                 "restore the target or remove the link")
        raise ImageLoadError(name, "no such file", "check the path and the working directory")
    if path.is_dir():
        raise ImageLoadError(name, "it is a directory", "pass an image file inside it")
    if path.stat().st_size == 0:
        raise ImageLoadError(name, "the file is empty (0 bytes)", "re-download or re-export it")
    return _decode(path, name, max_pixels, max_aspect_ratio)


def _decode(file: Path | io.BytesIO, name: str, max_pixels: int, max_aspect_ratio: float) -> Image.Image:
    """Decode an image file (a path or its bytes in memory), checking its header's size before any pixel."""
    fix_corrupt = "the file is truncated or corrupt; re-download or re-export it"
    try:
        with warnings.catch_warnings():
            # PIL warns above its own limit; ours is checked explicitly below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as im:
                _check_size(name, *im.size, max_pixels, max_aspect_ratio)
                im.load()
                return _finish(im, name)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:  # PIL refuses at open, before its size can be read
        import re

        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        if claimed and int(claimed.group(1)) > max_pixels:  # the same message as any image over the limit
            raise ImageLoadError(name, f"{int(claimed.group(1)):,} pixels exceeds max_pixels={max_pixels:,}",
                                 "downscale it, or raise max_pixels if trusted") from exc
        raise ImageLoadError(name, f"too many pixels for PIL ({exc})",
                             "downscale it before loading") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(name, "not a recognised image format",
                             "check that it really is an image (JPEG, PNG, TIFF, ...)") from exc
    except (OSError, SyntaxError, EOFError, ValueError) as exc:
        raise ImageLoadError(name, f"decoding failed ({exc})", fix_corrupt) from exc


def load_batch(sources: Sequence[ImageSource], transform: Callable[[Image.Image], torch.Tensor],
               max_pixels: int = 100_000_000,
               ) -> tuple[torch.Tensor | None, list[int], dict[int, str]]:
    """Load and preprocess many images; a bad image is returned as an error (not logged), never fatal.

    Args:
        sources: Images (see :func:`load_image`): paths, PIL images, numpy arrays, ``[3, H, W]`` tensors.
        transform: Preprocessing, PIL RGB image to a float tensor ``[3, H, W]`` (for example
            ``Backbone.transform``).
        max_pixels: Passed to :func:`load_image`.

    Returns:
        ``(batch, indices, errors)``: ``batch`` is ``[N, 3, H, W]`` for the ``N`` images that
        loaded (``None`` if none did), ``indices`` their positions in ``sources``, and
        ``errors`` maps the position of each failure to its message.
    """
    if isinstance(sources, (str, os.PathLike, bytes, Image.Image, np.ndarray, torch.Tensor)) or \
            callable(getattr(sources, "read", None)):
        sources = [sources]
    tensors: list[torch.Tensor] = []
    indices: list[int] = []
    errors: dict[int, str] = {}
    for i, source in enumerate(sources):
        try:
            tensor = transform(load_image(source, max_pixels=max_pixels))
            if tensors and tensor.shape != tensors[0].shape:
                raise ValueError(f"transform gave shape {tuple(tensor.shape)}, expected "
                                 f"{tuple(tensors[0].shape)} like the first image")
        except Exception as exc:  # one bad image must not stop the batch
            errors[i] = str(exc) if isinstance(exc, ImageLoadError) else \
                f"cannot preprocess image {describe_image(source)}: {type(exc).__name__}: {exc}"
            logger.debug("skipping image %d: %s", i, errors[i])  # returned: the caller reports it once
            continue
        tensors.append(tensor)
        indices.append(i)
    batch = torch.stack(tensors) if tensors else None
    return batch, indices, errors


def is_tensor_batch(x: object) -> bool:
    """Return True if ``x`` is an already preprocessed tensor batch of shape ``[B, 3, H, W]``.

    A 3-D ``[3, H, W]`` tensor is one image still to be preprocessed (see :func:`load_image`).
    """
    return isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] == 3
