"""dira_zoo.io on the real radiographs in ../shared/data and on generated good and bad files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dira_zoo.errors import ImageReadError
from dira_zoo.io import XrayImage, as_xray, find_images, read_image

MONO2 = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
MONO1 = "Fake_MONOHR1.dcm"


def _write(path: Path, array: np.ndarray, params: tuple[int, ...] = ()) -> Path:
    ok, buf = cv2.imencode(path.suffix, array, list(params))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _dicom(path: Path, pixels: np.ndarray | None, **elements: object) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    else:
        ds.Rows, ds.Columns = 64, 64
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _ramp(h: int = 48, w: int = 64, top: int = 4095) -> np.ndarray:
    return np.tile(np.linspace(0, top, w), (h, 1)).round().astype(np.uint16)


# --- real files ---------------------------------------------------------------------------------


def test_real_pngs_and_tbx11k(real_cxr: Path) -> None:
    for name in ("00000001_000.png", "00027426_000.png"):
        image = read_image(real_cxr / name)
        assert image.original_size == (512, 512)
        assert image.pixels.dtype == np.float32 and image.pixels.shape == (512, 512)
        assert image.source_format == "png" and image.bits == 8
        raw = cv2.imread(str(real_cxr / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_allclose(image.pixels, raw / 255.0, atol=1e-6)
    # TBX11K stores radiographs as 3-channel PNGs: the grey result equals the (identical) channels.
    tb = real_cxr / "tbx11k" / "imgs" / "tb" / "tb0005.png"
    raw = cv2.imread(str(tb), cv2.IMREAD_UNCHANGED)
    assert raw.ndim == 3
    image = read_image(tb)
    assert image.pixels.ndim == 2 and image.original_size == raw.shape[:2]
    np.testing.assert_allclose(image.pixels, cv2.cvtColor(raw, cv2.COLOR_BGR2GRAY) / 255.0, atol=1e-6)


def test_real_dicoms_monochrome1_is_inverted(real_cxr: Path) -> None:
    mono2 = read_image(real_cxr / MONO2)
    mono1 = read_image(real_cxr / MONO1)
    assert mono2.source_format == mono1.source_format == "dicom"
    assert mono2.original_size == (1024, 1024)
    assert mono2.pixels.min() >= 0.0 and mono2.pixels.max() <= 1.0
    # Same stored pixels, opposite photometric interpretation: the outputs must be each other's inverse.
    r = np.corrcoef(mono2.pixels.ravel(), mono1.pixels.ravel())[0, 1]
    assert r < -0.99
    np.testing.assert_allclose(mono2.pixels, 1.0 - mono1.pixels, atol=1e-5)


def test_real_dicom_matches_the_nih_png_scan(real_cxr: Path) -> None:
    # The SIIM DICOM is a ChestX-ray14 image: decoding must produce a plausible radiograph, not noise.
    image = read_image(real_cxr / MONO2)
    assert 0.2 < float(image.pixels.mean()) < 0.8
    assert float(image.pixels.std()) > 0.1


def test_read_from_bytes_and_unicode_path(real_cxr: Path, tmp_path: Path) -> None:
    data = (real_cxr / "00000001_000.png").read_bytes()
    from_bytes = read_image(data, name="upload.png")
    assert from_bytes.path is None and from_bytes.original_size == (512, 512)
    odd = tmp_path / "Röntgen 胸部.png"
    odd.write_bytes(data)
    np.testing.assert_array_equal(read_image(odd).pixels, from_bytes.pixels)
    dicom = read_image((real_cxr / MONO2).read_bytes())  # detected by the DICM magic, no name needed
    assert dicom.source_format == "dicom"


# --- generated good files ------------------------------------------------------------------------


def test_16bit_png_scaled_by_significant_bits(tmp_path: Path) -> None:
    twelve = _write(tmp_path / "twelve.png", _ramp(top=4095))
    image = read_image(twelve)
    assert image.bits == 12
    assert image.pixels.max() == pytest.approx(1.0) and image.pixels.min() == 0.0
    # A darker 12-bit image keeps its grey levels (no per-image stretch).
    dark = read_image(_write(tmp_path / "dark.png", _ramp(top=3000)))
    assert dark.bits == 12 and dark.pixels.max() == pytest.approx(3000 / 4095, abs=1e-6)
    full = read_image(_write(tmp_path / "full.png", _ramp(top=65535)))
    assert full.bits == 16 and full.pixels.max() == pytest.approx(1.0)


def test_rgba_png_drops_alpha_and_uses_luminance(tmp_path: Path) -> None:
    bgra = np.zeros((20, 30, 4), np.uint8)
    bgra[..., 2] = 255  # pure red in OpenCV's BGR order
    bgra[..., 3] = 7  # alpha must not leak into the grey value
    image = read_image(_write(tmp_path / "rgba.png", bgra))
    assert image.pixels.shape == (20, 30)
    np.testing.assert_allclose(image.pixels, 0.299, atol=0.005)


def test_tiff_jpeg_and_float_tiff(tmp_path: Path) -> None:
    grey = (np.random.default_rng(0).random((40, 70)) * 255).astype(np.uint8)
    tif = read_image(_write(tmp_path / "a.tiff", grey))
    assert tif.source_format == "tiff" and tif.original_size == (40, 70)
    np.testing.assert_allclose(tif.pixels, grey / 255.0, atol=1e-6)
    tif16 = read_image(_write(tmp_path / "b.tif", _ramp(top=1023)))
    assert tif16.bits == 10 and tif16.pixels.max() == pytest.approx(1.0)
    floats = read_image(_write(tmp_path / "c.tif", (grey / 255.0).astype(np.float32)))
    assert floats.bits == 32
    np.testing.assert_allclose(floats.pixels, grey / 255.0, atol=1e-6)
    smooth = cv2.GaussianBlur(grey, (9, 9), 3)
    jpg = read_image(_write(tmp_path / "d.jpg", smooth, (cv2.IMWRITE_JPEG_QUALITY, 95)))
    assert jpg.source_format == "jpeg" and jpg.original_size == (40, 70)
    assert np.abs(jpg.pixels - smooth / 255.0).mean() < 0.02


def test_dicom_window_rescale_and_monochrome1(tmp_path: Path) -> None:
    ramp = _ramp(top=4095)
    plain = read_image(_dicom(tmp_path / "plain.dcm", ramp))
    np.testing.assert_allclose(plain.pixels, ramp / 4095.0, atol=1e-6)  # full range without a window
    assert plain.bits == 12
    # Window 1000..3000 (center 2000, width 2000): below → 0, above → 1, linear in between.
    win = read_image(_dicom(tmp_path / "win.dcm", ramp, WindowCenter=2000, WindowWidth=2000)).pixels
    assert win[0, 0] == 0.0 and win[0, -1] == 1.0
    col = int(np.argmin(np.abs(ramp[0] - 2000)))
    assert win[0, col] == pytest.approx(0.5, abs=0.02)
    # Rescale slope/intercept happen before the window (window given in modality units).
    rescaled = _dicom(
        tmp_path / "rs.dcm", ramp, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=3000, WindowWidth=4000
    )
    np.testing.assert_allclose(read_image(rescaled).pixels, win, atol=2e-3)
    inverted = read_image(_dicom(tmp_path / "m1.dcm", ramp, PhotometricInterpretation="MONOCHROME1"))
    np.testing.assert_allclose(inverted.pixels, 1.0 - plain.pixels, atol=1e-6)


def test_arrays_are_accepted(tmp_path: Path) -> None:
    assert as_xray(np.full((5, 6), 255, np.uint8)).pixels.max() == 1.0
    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[..., 0] = 255  # red in RGB order for arrays
    assert as_xray(rgb).pixels[0, 0] == pytest.approx(0.299, abs=0.005)
    image = as_xray(np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4))
    assert isinstance(image, XrayImage) and image.source_format == "array" and image.original_size == (3, 4)
    with pytest.raises(ImageReadError, match="unsupported channel layout"):
        as_xray(np.zeros((8, 8, 2), np.uint8))


def test_find_images_expands_sorted_folders(real_cxr: Path, tmp_path: Path) -> None:
    found = find_images([real_cxr])
    names = [p.name for p in found]
    assert len(found) == 7 and MONO1 in names and "tb0007.png" in names
    assert found == sorted(found)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"")
    dicom_no_suffix = tmp_path / "IM0001"
    dicom_no_suffix.write_bytes((real_cxr / MONO2).read_bytes())
    assert find_images([tmp_path]) == [dicom_no_suffix]
    assert read_image(dicom_no_suffix).source_format == "dicom"
    with pytest.raises(ImageReadError, match="no such file or folder"):
        find_images([tmp_path / "missing"])


# --- generated bad files -------------------------------------------------------------------------


def _bad_files(tmp: Path, real_png: bytes) -> dict[str, tuple[Path, str]]:
    files: dict[str, tuple[Path, str]] = {}

    def add(name: str, data: bytes, problem: str) -> None:
        path = tmp / name
        path.write_bytes(data)
        files[name] = (path, problem)

    add("zero.png", b"", "empty")
    add("truncated.png", real_png[: len(real_png) // 2], "truncated PNG")
    add("text.png", b"this is not an image\n" * 10, "not a supported image")
    ok, jpg = cv2.imencode(".jpg", np.full((64, 64), 128, np.uint8))
    add("truncated.jpg", jpg.tobytes()[:300], "truncated JPEG")
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 100_001))
        + _png_chunk(b"IEND", b"")
    )
    add("bomb.png", bomb, "decompression bomb")
    return files


def test_bad_files_raise_one_line_naming_the_file(real_cxr: Path, tmp_path: Path) -> None:
    files = _bad_files(tmp_path, (real_cxr / "00000001_000.png").read_bytes())
    no_pixels = _dicom(tmp_path / "nopixels.dcm", None)
    files["nopixels.dcm"] = (no_pixels, "no pixel data")
    garbage_dcm = tmp_path / "garbage.dcm"
    garbage_dcm.write_bytes(b"\x00" * 10 + b"garbage")
    files["garbage.dcm"] = (garbage_dcm, "DICOM")
    for path, problem in files.values():
        with pytest.raises(ImageReadError) as info:
            read_image(path)
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(str(path)), message
        assert problem in message, message
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path)
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_pixel_limit_applies_to_every_format(real_cxr: Path, tmp_path: Path) -> None:
    for name in ("00000001_000.png", MONO2):
        with pytest.raises(ImageReadError, match="above the limit"):
            read_image(real_cxr / name, max_pixels=100_000)
    for suffix in (".jpg", ".tiff"):
        path = _write(tmp_path / f"big{suffix}", np.zeros((400, 300), np.uint8))
        with pytest.raises(ImageReadError, match=r"300×400 pixels"):
            read_image(path, max_pixels=100_000)
        assert read_image(path).original_size == (400, 300)


def test_dicom_voi_lut_sequence_multiframe_and_colour(tmp_path: Path) -> None:
    ramp = _ramp(top=4095)
    lut_item = pydicom.Dataset()
    lut_item.LUTDescriptor = [4096, 0, 8]
    lut_item.LUTData = (np.arange(4096) // 16).astype(np.uint16).tobytes()
    lut = read_image(_dicom(tmp_path / "lut.dcm", ramp, VOILUTSequence=[lut_item])).pixels
    np.testing.assert_allclose(lut, (ramp // 16) / 255.0, atol=1e-6)  # scaled by the LUT's output range
    # two frames: the first is read
    frames = np.stack([ramp, 4095 - ramp])
    multi = _dicom(tmp_path / "multi.dcm", ramp, NumberOfFrames=2)
    ds = pydicom.dcmread(multi)
    ds.PixelData = frames.astype(np.uint16).tobytes()
    ds.save_as(multi)
    np.testing.assert_allclose(read_image(multi).pixels, ramp / 4095.0, atol=1e-6)
    # an RGB DICOM (e.g. a secondary capture) is converted with luminance
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[..., 0] = 255
    colour = _dicom(
        tmp_path / "rgb.dcm", None, PhotometricInterpretation="RGB", SamplesPerPixel=3, BitsAllocated=8,
        BitsStored=8, HighBit=7, PlanarConfiguration=0, Rows=16, Columns=24, PixelData=rgb.tobytes(),
    )  # fmt: skip
    np.testing.assert_allclose(read_image(colour).pixels, 0.299, atol=0.005)
