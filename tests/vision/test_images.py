"""Tests for kgzsl.vision.images: every bad file gives ImageLoadError, every odd mode becomes RGB."""

from __future__ import annotations

import io
import re
import logging
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from kgzsl.vision.images import ImageLoadError, describe_image, is_tensor_batch, load_batch, load_image


def _noise(size=(64, 48), mode="RGB", seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def _png_claiming(path, width: int, height: int) -> None:
    """Write a valid small PNG, then rewrite its IHDR (with a correct CRC) to claim width x height."""
    buf = io.BytesIO()
    Image.new("1", (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def _small_transform(im: Image.Image) -> torch.Tensor:
    arr = np.asarray(im.resize((8, 8)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)


@pytest.fixture
def bad_files(tmp_path):
    """name -> path of each kind of unreadable input."""
    files = {"missing": tmp_path / "missing.jpg", "directory": tmp_path / "adir.jpg"}
    files["directory"].mkdir()
    files["empty"] = tmp_path / "empty.jpg"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "notes.jpg"
    files["text"].write_text("this is not an image\n" * 20)
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png")):
        buf = io.BytesIO()
        _noise((256, 256)).save(buf, format=fmt)
        files[f"truncated_{ext}"] = tmp_path / f"truncated.{ext}"
        files[f"truncated_{ext}"].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    files["huge"] = tmp_path / "huge.png"
    _png_claiming(files["huge"], 20000, 20000)   # above PIL's own bomb limit
    files["big"] = tmp_path / "big.png"
    _png_claiming(files["big"], 12000, 12000)    # 144 M: above ours, between PIL's warn and error
    return files


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "text", "truncated_jpg",
                                  "truncated_png", "huge", "big"])
def test_bad_inputs_raise_with_path(bad_files, kind):
    path = bad_files[kind]
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert info.value.source == str(path)
    assert isinstance(info.value, ValueError)


def test_a_broken_link_is_named_as_one_with_its_missing_target(tmp_path):
    link = tmp_path / "cat.jpg"
    link.symlink_to(tmp_path / "gone" / "cat.jpg")
    with pytest.raises(ImageLoadError, match=rf"cannot load image {link}: a broken symbolic link \(its target "
                       rf"{tmp_path / 'gone' / 'cat.jpg'} is missing\); restore the target or remove the link"):
        load_image(link)
    with pytest.raises(ImageLoadError, match="no such file"):  # a plain missing path stays what it was
        load_image(tmp_path / "dog.jpg")


@pytest.mark.parametrize("url", ["https://upload.wikimedia.org/x/cat.jpg", "HTTP://example.com/a.png",
                                 "s3://bucket/cat.jpg"])
def test_a_url_is_refused_as_one_not_as_a_missing_file(url):
    with pytest.raises(ImageLoadError, match=rf"^cannot load image {re.escape(url)}: a URL: kgzsl does not fetch "
                       "images from the network; download the image and pass the file, or its bytes$"):
        load_image(url)


def test_an_empty_array_is_called_empty():
    with pytest.raises(ImageLoadError, match=r"the image is empty \(0x0 pixels\); pass an image with pixels"):
        load_image(np.zeros((0, 0, 3), np.uint8))


def test_pixel_limit_checked_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    _png_claiming(path, 20000, 20000)  # its pixel data is only 8x8: decoding would fail differently
    with pytest.raises(ImageLoadError, match="pixels"):
        load_image(path)
    ok = tmp_path / "ok.png"
    _noise((100, 100)).save(ok)
    with pytest.raises(ImageLoadError, match="max_pixels=5,000"):
        load_image(ok, max_pixels=5000)
    assert load_image(ok, max_pixels=10_000).size == (100, 100)


def _odd_images() -> dict[str, Image.Image]:
    base = _noise((40, 30))
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((40, 30)))
    pal = base.convert("P", palette=Image.Palette.ADAPTIVE)
    pal.info["transparency"] = 0
    wide = np.linspace(1000, 3000, 40 * 30).reshape(30, 40)
    return {
        "L": base.convert("L"), "LA": base.convert("LA"), "RGBA": rgba, "CMYK": base.convert("CMYK"),
        "I;16": Image.fromarray(wide.astype(np.uint16)),
        "I": Image.fromarray((wide * 30 - 50000).astype(np.int32)),
        "F": Image.fromarray((wide / 3000).astype(np.float32)),
        "P": pal, "P_plain": base.convert("P"), "1": base.convert("1"), "RGB": base,
    }


@pytest.mark.parametrize("mode", list(_odd_images()))
def test_modes_convert_to_rgb(mode):
    im = load_image(_odd_images()[mode])
    assert im.mode == "RGB" and im.size == (40, 30)


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("LA", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"),
                                      ("CMYK", "TIFF"), ("I;16", "PNG"), ("I;16", "TIFF"),
                                      ("P", "PNG"), ("P", "GIF"), ("1", "PNG"), ("F", "TIFF")])
def test_modes_from_files(tmp_path, mode, fmt):
    path = tmp_path / f"img.{fmt.lower()}"
    _odd_images()[mode].save(path, format=fmt)
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (40, 30)


def test_sixteen_bit_scaled_by_value_range(tmp_path):
    path = tmp_path / "deep.png"
    _odd_images()["I;16"].save(path)
    arr = np.asarray(load_image(path))
    assert arr.min() == 0 and arr.max() == 255  # a plain clip would give all 255
    assert len(np.unique(arr)) > 100


def test_transparency_composited_on_white():
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert load_image(im).getpixel((0, 0)) == (255, 255, 255)
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    assert load_image(im).getpixel((0, 0)) == (255, 0, 0)


def test_exif_orientation_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    _noise((40, 20)).save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def test_load_batch_skips_bad_items(tmp_path, bad_files, caplog):
    good = tmp_path / "good.png"
    _noise().save(good)
    sources = [good, bad_files["text"], _noise(mode="L"), bad_files["missing"], str(good)]
    batch, indices, errors = load_batch(sources, _small_transform)
    assert batch.shape == (3, 3, 8, 8)
    assert indices == [0, 2, 4]
    assert set(errors) == {1, 3}
    assert str(bad_files["missing"]) in errors[3]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # returned, so reported once by the caller


def test_load_batch_all_bad_and_transform_failure(bad_files):
    batch, indices, errors = load_batch([bad_files["empty"]], _small_transform)
    assert batch is None and indices == [] and list(errors) == [0]

    def broken(_im):
        raise RuntimeError("boom")
    batch, indices, errors = load_batch([_noise()], broken)
    assert batch is None and "boom" in errors[0]


def test_is_tensor_batch():
    assert is_tensor_batch(torch.zeros(2, 3, 8, 8))
    assert not is_tensor_batch(torch.zeros(3, 8, 8))
    assert not is_tensor_batch(torch.zeros(2, 1, 8, 8))
    assert not is_tensor_batch("img.jpg")


def test_numpy_arrays_become_rgb():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(load_image(rgb)), rgb)
    gray = rgb[:, :, 0]
    assert np.array_equal(np.asarray(load_image(gray)), np.repeat(gray[:, :, None], 3, axis=2))
    assert np.array_equal(np.asarray(load_image(gray[:, :, None])), np.asarray(load_image(gray)))
    clear = np.dstack([rgb, np.zeros((5, 7), np.uint8)])  # fully transparent: composited on white
    assert (np.asarray(load_image(clear)) == 255).all()
    assert np.array_equal(np.asarray(load_image(np.dstack([rgb, np.full((5, 7), 255, np.uint8)]))), rgb)
    assert np.array_equal(np.asarray(load_image(rgb / 255.0)), rgb)  # float in [0, 1], rounded back
    assert np.asarray(load_image(np.eye(3, dtype=bool)))[0, 0].tolist() == [255, 255, 255]


def test_tensors_are_channels_first_images():
    rgb = np.random.default_rng(1).integers(0, 256, (6, 4, 3), dtype=np.uint8)
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    assert load_image(chw).size == (4, 6)
    assert np.array_equal(np.asarray(load_image(chw)), rgb)
    assert np.array_equal(np.asarray(load_image(chw.float() / 255)), rgb)
    assert np.array_equal(np.asarray(load_image(chw.half() / 255)), rgb)
    assert np.array_equal(np.asarray(load_image(chw[:1])), np.repeat(rgb[:, :, :1], 3, axis=2))


@pytest.mark.parametrize("bad, problem", [
    (np.zeros((2, 4, 4, 3), np.uint8), "4-D"),
    (np.zeros((4, 4, 2), np.uint8), "1, 3 or 4 channels"),
    (torch.zeros(5, 4, 4), "1, 3 or 4 channels"),
    (np.full((4, 4, 3), 1.5), r"\[0, 1\]"),
    (torch.full((3, 4, 4), -0.5), r"\[0, 1\]"),
    (np.full((4, 4), np.nan), r"\[0, 1\]"),
    (np.zeros((4, 4), np.uint16), "uint16"),
    (np.zeros((0, 4, 3), np.uint8), "empty"),
    (np.zeros((1, 400, 3), np.uint8), "elongated"),
])
def test_bad_arrays_are_refused(bad, problem):
    with pytest.raises(ImageLoadError, match=problem) as info:
        load_image(bad)
    assert info.value.source.startswith(("<array ", "<tensor "))


def test_array_pixel_limit():
    with pytest.raises(ImageLoadError, match="max_pixels=100"):
        load_image(np.zeros((20, 20, 3), np.uint8), max_pixels=100)


def test_describe_image_and_arrays_in_batches():
    assert describe_image("a/b.jpg") == "a/b.jpg"
    assert describe_image(np.zeros((2, 3, 3), np.uint8)) == "<array 2x3x3 uint8>"
    assert describe_image(torch.zeros(3, 2, 2)) == "<tensor 3x2x2 float32>"
    assert describe_image(_noise()) == "Image"
    batch, indices, errors = load_batch(np.zeros((8, 8, 3), np.uint8), _small_transform)  # one array alone
    assert batch.shape == (1, 3, 8, 8) and indices == [0] and errors == {}
    batch, indices, errors = load_batch([torch.zeros(3, 8, 8), np.full((8, 8), 2.0)], _small_transform)
    assert indices == [0] and "<array 8x8 float64>" in errors[1]


@pytest.mark.parametrize("kind", ["text", "truncated_jpg", "truncated_png", "huge", "big"])
def test_encoded_bytes_are_checked_like_files(bad_files, kind):
    data = bad_files[kind].read_bytes()
    with pytest.raises(ImageLoadError) as info:
        load_image(data)
    assert info.value.source == f"<{len(data):,} bytes>" == describe_image(data)
    with pytest.raises(ImageLoadError, match="0 bytes"):
        load_image(b"")


def test_encoded_bytes_decode_like_the_file(tmp_path):
    path = tmp_path / "ok.png"
    _noise((100, 60), mode="RGBA").save(path)
    from_bytes = load_image(path.read_bytes())
    assert from_bytes.mode == "RGB" and np.array_equal(np.asarray(from_bytes), np.asarray(load_image(path)))
    with pytest.raises(ImageLoadError, match="max_pixels=5,000"):
        load_image(path.read_bytes(), max_pixels=5000)
    batch, indices, errors = load_batch(path.read_bytes(), _small_transform)  # one encoded image alone
    assert batch.shape == (1, 3, 8, 8) and indices == [0] and errors == {}


def test_base64_text_data_urls_and_open_files_are_images_as_hugging_face_takes_them(tmp_path):
    import base64

    path = tmp_path / "ok.png"
    _noise((100, 60)).save(path)
    expected = np.asarray(load_image(path))
    text = base64.b64encode(path.read_bytes()).decode()
    with open(path, "rb") as file:
        sources = [text, "data:image/png;base64," + text, io.BytesIO(path.read_bytes()), file]
        assert all(np.array_equal(np.asarray(load_image(s)), expected) for s in sources)
    assert describe_image(text) == f"<base64 text, {len(text):,} characters>"
    assert describe_image("data:image/png;base64," + text).startswith("<data URL, ")
    batch, indices, errors = load_batch(io.BytesIO(path.read_bytes()), _small_transform)  # one file alone
    assert batch.shape == (1, 3, 8, 8) and indices == [0] and errors == {}


@pytest.mark.parametrize("source, problem", [
    ("data:image/png;base64,@@@", "not valid base64"),
    ("data:,", r"no data \(0 bytes\)"),
    ("photos/" + "a" * 70, "no such file"),  # long, base64's letters only, no valid base64: a path
    ("/" + "y" * 5000, r"not a usable path \(File name too long\)"),
    (io.StringIO("abc"), "binary mode"),
])
def test_text_that_is_neither_image_nor_path_says_so_briefly(source, problem):
    with pytest.raises(ImageLoadError, match=problem) as info:
        load_image(source)
    assert len(str(info.value)) < 500  # never the whole text back


def test_a_closed_pil_image_is_named_as_closed(tmp_path):
    from PIL import Image

    from kgzsl.vision.images import ImageLoadError, load_image

    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8), "red").save(path)
    image = Image.open(path)
    image.close()
    with pytest.raises(ImageLoadError, match="the PIL image is closed; pass it before closing it"):
        load_image(image)
    assert load_image(Image.open(path)).size == (8, 8)


def test_an_image_pil_refuses_at_open_gets_the_same_message_as_any_over_max_pixels(tmp_path):
    _png_claiming(tmp_path / "bomb.png", 30_000, 30_000)  # 900 M pixels: PIL's own bomb check fires before ours
    with pytest.raises(ImageLoadError, match=r"900,000,000 pixels exceeds max_pixels=40,000,000") as err:
        load_image((tmp_path / "bomb.png").read_bytes(), max_pixels=40_000_000)
    assert "decompression bomb" not in str(err.value) and "downscale it, or raise max_pixels" in str(err.value)
