"""The serving runtime's one image decoding policy (handlers/pack_images.py), in-process: the pixel budget checked from
the header, 16-bit grey levels scaled, palette / grey / CMYK / alpha to RGB, the EXIF orientation applied; and strict
JSON answers (NaN and infinities as null) from the TorchServe handler's encoder."""

from __future__ import annotations

import importlib
import io
import json
import time
from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="module")
def images() -> Any:
    from packager.serve.tasks import runtime_on_path

    runtime_on_path()
    return importlib.import_module("pack_images")


def _encode(image: Any, fmt: str = "PNG", **options: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def _rgb(seed: int = 0, height: int = 48, width: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_a_huge_png_is_refused_from_its_header_without_decoding(images, monkeypatch):
    """13000x13000 (169 megapixels, 'small' compressed): a 400 naming the size and the limit, no pixel decoded."""
    from PIL import Image, PngImagePlugin

    bomb = _encode(Image.new("L", (13000, 13000)))
    assert len(bomb) < 400_000
    loads: list[Any] = []
    real_load = PngImagePlugin.PngImageFile.load
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: loads.append(self) or real_load(self))
    start = time.monotonic()
    with pytest.raises(
        images.RequestError, match=r"image too large: 13000x13000 is 169,000,000 pixels, over this model's limit of 40,000,000; "
    ):
        images.open_rgb(bomb)
    assert loads == [] and time.monotonic() - start < 2.0
    del Image


def test_the_pixel_budget_is_configurable(images):
    from PIL import Image

    data = _encode(Image.fromarray(_rgb(height=100, width=100)))
    assert images.max_pixels({}) == images.max_pixels(None) == 40_000_000
    assert images.max_pixels({"max_pixels": 10_000}) == 10_000
    assert images.open_rgb(data, images.max_pixels({"max_pixels": 10_000})).size == (100, 100)
    with pytest.raises(images.RequestError, match="100x100 is 10,000 pixels, over this model's limit of 9,999"):
        images.open_rgb(data, 9_999)


def test_pillows_own_bomb_error_is_the_same_refusal(images, monkeypatch):
    from PIL import Image

    data = _encode(Image.fromarray(_rgb(height=100, width=100)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses over twice this
    with pytest.raises(images.RequestError, match="image too large"):
        images.open_rgb(data, 10**9)


def test_sixteen_bit_grey_is_scaled_not_clipped(images):
    from PIL import Image

    grey = np.random.default_rng(3).integers(0, 256, (40, 50), dtype=np.uint8)
    eight = images.open_rgb(_encode(Image.fromarray(grey, "L")))
    sixteen = _encode(Image.fromarray(grey.astype(np.uint16) * 257))
    assert Image.open(io.BytesIO(sixteen)).mode.startswith("I")
    got = images.open_rgb(sixteen)
    assert got.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(got), np.asarray(eight))
    wide = Image.fromarray((grey.astype(np.int32) * 257), "I")  # mode I (32-bit): the same scale
    np.testing.assert_array_equal(np.asarray(images.to_rgb(wide)), np.asarray(eight))


def test_palette_grey_alpha_and_cmyk_become_rgb(images):
    from PIL import Image

    rgb = Image.fromarray(_rgb(1))
    palette = rgb.quantize(64)
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    for image, expected in (
        (palette, palette.convert("RGB")),
        (transparent, transparent.convert("RGBA").convert("RGB")),
        (rgb.convert("L"), rgb.convert("L").convert("RGB")),
        (rgb.convert("LA"), rgb.convert("L").convert("RGB")),
        (rgb.convert("RGBA"), rgb),
    ):
        got = images.open_rgb(_encode(image))
        assert got.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=image.mode)
    cmyk = images.open_rgb(_encode(rgb.convert("CMYK"), "JPEG", quality=95))
    assert cmyk.mode == "RGB" and cmyk.size == rgb.size
    assert np.abs(np.asarray(cmyk, np.int16) - np.asarray(rgb, np.int16)).mean() < 20


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_is_applied(images, fmt):
    """Stored sideways with orientation 6 (rotate 90 clockwise to show): decoded as the upright image."""
    from PIL import Image

    upright = Image.fromarray(_rgb(2, height=64, width=96))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes
    exif = Image.Exif()
    exif[0x0112] = 6
    options: dict[str, Any] = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}
    got = images.open_rgb(_encode(stored, fmt, exif=exif, **options))
    assert got.size == upright.size == (96, 64)
    plain = images.open_rgb(_encode(upright, fmt, **options))
    diff = np.abs(np.asarray(got, np.int16) - np.asarray(plain, np.int16))
    assert diff.max() <= (0 if fmt == "PNG" else 8) and diff.mean() < 1.5


def test_bad_bytes_and_a_truncated_image_are_request_errors(images):
    from PIL import Image

    with pytest.raises(images.RequestError, match="not an image"):
        images.open_rgb(b"these bytes are no image")
    whole = _encode(Image.fromarray(_rgb(4)), "JPEG")
    with pytest.raises(images.RequestError, match="not an image"):
        images.open_rgb(whole[: len(whole) // 2])


def test_non_finite_answers_are_strict_json(images):
    runtime = importlib.import_module("pack_runtime")
    requests = importlib.import_module("pack_requests")
    answer = requests.encode_tensors(["y"], [np.asarray([[np.nan, 1.5, np.inf, -np.inf]], np.float32)])
    text = runtime.json_text({**answer, "score": float("nan")})
    assert "NaN" not in text and "Infinity" not in text

    def refuse(token: str) -> None:
        raise ValueError(token)

    doc = json.loads(text, parse_constant=refuse)
    assert doc["outputs"][0]["data"] == [[None, 1.5, None, None]] and doc["score"] is None
    assert runtime.json_text({"a": [1.0, 2]}) == '{"a":[1.0,2]}'


def test_a_pixel_budget_that_is_not_a_positive_integer_is_refused_by_the_spec() -> None:
    from packager.build import spec as spec_mod
    from packager.errors import UsageError

    spec_mod.check({"name": "m", "preprocessing": {"max_pixels": 1000, "mean": [0.5]}}, "pack.yaml")
    for bad in (0, -5, "many", 1.5):
        with pytest.raises(UsageError) as info:
            spec_mod.check({"name": "m", "preprocessing": {"max_pixels": bad}}, "pack.yaml")
        assert "preprocessing.max_pixels" in info.value.message, info.value.message


def test_classification_tensor_is_torchvisions_arithmetic_in_float32(images):
    """Resize the short side, centre-crop, then ((pixels / 255) - mean) / std in float32, channels first, batch of
    one, contiguous: the handler's in-place arithmetic gives the same bits as the operations written out."""
    from PIL import Image

    pre = {"resize": 40, "crop": [32, 24], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    image = Image.fromarray(_rgb(3, 60, 50))
    got = images.classification_tensor(image, pre)
    resized = image.resize((40, 48), images._bilinear())  # short side (width 50) to 40
    pixels = np.asarray(resized.crop((8, 8, 32, 40)), dtype=np.float32)
    mean, std = np.float32(pre["mean"]), np.float32(pre["std"])
    expected = (((pixels / np.float32(255)) - mean) / std).transpose(2, 0, 1)[None]
    assert got.dtype == np.float32 and got.shape == (1, 3, 32, 24) and got.flags["C_CONTIGUOUS"]
    assert np.array_equal(got, expected)
