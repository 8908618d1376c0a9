"""Decoding every input format into one thing: a grey float32 image in [0, 1] plus its original size.

PNG/JPEG/TIFF go through OpenCV (``imdecode`` on bytes read once, so any path works, unicode included);
DICOM goes through pydicom. Every check a user's file can fail raises :class:`ImageReadError` naming
the file and the problem. Choices that change pixel values, and why:

- **Colour** (RGB/RGBA, e.g. TBX11K's 3-channel PNGs): luminance (ITU-R 601, OpenCV's weights); alpha
  is dropped. Radiographs saved as colour have equal channels, so this is lossless for them.
- **16-bit PNG/TIFF**: the container depth says nothing about the detector depth (12-bit data is
  usually stored in 16 bits), so values are divided by ``2**bits - 1`` where ``bits`` is the smallest
  of 8/10/12/14/16 that holds the image's maximum. Unlike a per-image min/max stretch this keeps the
  relative grey levels the file stores, and full-range 16-bit data is simply divided by 65535.
- **Floating-point TIFF**: kept when already in [0, 1], otherwise min/max scaled.
- **DICOM**: modality LUT (rescale slope/intercept), then the first VOI LUT (preferred) or window
  (center/width) when the file has one, scaled by the VOI output range; without one, the full
  min/max range of the modality values. ``MONOCHROME1`` is inverted so that bone is always bright.
  Multi-frame: frame 0.
- **Decompression bombs**: dimensions are read from the PNG/JPEG/TIFF header (DICOM: Rows × Columns)
  and refused above ``max_pixels`` *before* anything is decoded.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImageReadError

#: Suffixes a folder is searched for (files named explicitly are read whatever their suffix).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
#: 2**28 pixels (16384²): far above any radiograph, far below what would exhaust memory.
MAX_PIXELS = 2**28

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
_DICOM_MAGIC_OFFSET = 128


@dataclass(frozen=True)
class XrayImage:
    """A decoded radiograph: what every later step (preprocessing, localization, overlays) consumes."""

    pixels: np.ndarray  # float32 H×W in [0, 1], bright = dense (bone)
    path: str | None
    original_size: tuple[int, int]  # (height, width)
    source_format: str  # png | jpeg | tiff | dicom | array | other
    bits: int  # significant bits of the stored values (32 for floating point)

    @property
    def name(self) -> str:
        """A short label for tables and file names (the file stem, or ``image``)."""
        return Path(self.path).stem if self.path else "image"


def read_image(
    source: str | Path | bytes, *, name: str | None = None, max_pixels: int = MAX_PIXELS
) -> XrayImage:
    """Decode a file (path) or its content (bytes; ``name`` labels errors and picks DICOM by suffix)."""
    label = str(source) if not isinstance(source, bytes) else (name or "<bytes>")
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if path.is_dir():
            raise ImageReadError(label, "is a folder, not an image")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageReadError(label, "no such file") from None
        except OSError as exc:
            raise ImageReadError(label, f"cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise ImageReadError(label, "is empty (0 bytes)")
    if _is_dicom(data, label):
        pixels, bits = _decode_dicom(data, label, max_pixels)
        fmt = "dicom"
    else:
        pixels, bits, fmt = _decode_raster(data, label, max_pixels)
    if not np.isfinite(pixels).all():
        raise ImageReadError(label, "contains NaN or infinite pixel values")
    pixels = np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32)
    path_str = None if isinstance(source, bytes) else str(source)
    return XrayImage(pixels, path_str, (pixels.shape[0], pixels.shape[1]), fmt, bits)


def as_xray(image: XrayImage | np.ndarray | str | Path) -> XrayImage:
    """Accept a path, an :class:`XrayImage` or a grey/colour array (uint8, uint16 or float in [0, 1])."""
    if isinstance(image, XrayImage):
        return image
    if isinstance(image, (str, Path)):
        return read_image(image)
    array = np.asarray(image)
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise ImageReadError("<array>", f"expected an H×W or H×W×C image, got shape {array.shape}")
    grey = _to_grey(array, "<array>", rgb=True)
    pixels, bits = _scale(grey, "<array>")
    pixels = np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32)
    return XrayImage(pixels, None, (pixels.shape[0], pixels.shape[1]), "array", bits)


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named explicitly, plus the images (by suffix, or DICOM magic) found under folders, sorted.

    A missing input raises; unreadable files are left for :func:`read_image` to report one by one.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if _looks_like_image(p)))
        elif path.exists():
            found.append(path)
        else:
            raise ImageReadError(path, "no such file or folder")
    return list(dict.fromkeys(found))


def _looks_like_image(path: Path) -> bool:
    if path.name.startswith(".") or not path.is_file():
        return False
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    if path.suffix:
        return False
    try:  # extension-less files are common in DICOM exports
        with path.open("rb") as fh:
            return fh.read(_DICOM_MAGIC_OFFSET + 4)[_DICOM_MAGIC_OFFSET:] == b"DICM"
    except OSError:
        return False


def _is_dicom(data: bytes, label: str) -> bool:
    if data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return True
    return Path(label).suffix.lower() in DICOM_SUFFIXES


# --- raster formats (OpenCV) ---------------------------------------------------------------------


def _decode_raster(data: bytes, label: str, max_pixels: int) -> tuple[np.ndarray, int, str]:
    import cv2

    fmt = _raster_format(data)
    size = _header_size(data, fmt, label)
    if size is not None:
        _check_size(size[0], size[1], label, max_pixels)
    if fmt == "png" and b"IEND" not in data[-64:]:
        raise ImageReadError(label, "truncated PNG (no IEND chunk at the end)")
    if fmt == "jpeg" and b"\xff\xd9" not in data[-1024:]:
        raise ImageReadError(label, "truncated JPEG (no end-of-image marker)")
    with _quiet_opencv():
        try:
            array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error as exc:
            raise ImageReadError(label, f"cannot be decoded ({_first_line(exc)})") from None
    if array is None:
        what = "not a supported image (PNG, JPEG, TIFF or DICOM)" if fmt == "other" else f"corrupt {fmt}"
        raise ImageReadError(label, what)
    _check_size(array.shape[0], array.shape[1], label, max_pixels)
    grey = _to_grey(array, label)
    pixels, bits = _scale(grey, label)
    return pixels, bits, fmt


def _raster_format(data: bytes) -> str:
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if data.startswith(_TIFF_MAGICS):
        return "tiff"
    return "other"


def _header_size(data: bytes, fmt: str, label: str) -> tuple[int, int] | None:
    """(height, width) from the file header without decoding, or None when the header is not parsed."""
    try:
        if fmt == "png":
            if data[12:16] != b"IHDR":
                raise ImageReadError(label, "corrupt PNG (no IHDR header)")
            width, height = struct.unpack(">II", data[16:24])
            return height, width
        if fmt == "jpeg":
            return _jpeg_size(data)
        if fmt == "tiff":
            return _tiff_size(data)
    except struct.error:
        raise ImageReadError(label, f"truncated {fmt} header") from None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments up to the first SOFn frame header."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return height, width
        pos += 2 + length
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257) of the first IFD."""
    order = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack(order + "I", data[4:8])[0]
    count = struct.unpack(order + "H", data[offset : offset + 2])[0]
    dims: dict[int, int] = {}
    for i in range(count):
        entry = data[offset + 2 + 12 * i : offset + 14 + 12 * i]
        tag, typ = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            dims[tag] = struct.unpack(order + ("H" if typ == 3 else "I"), entry[8 : 10 if typ == 3 else 12])[
                0
            ]
    if len(dims) < 2:
        return None
    return dims[257], dims[256]


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV logs decoder warnings on stderr; the CLIs promise one line per bad file, so mute them."""
    import cv2

    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def _to_grey(array: np.ndarray, label: str, *, rgb: bool = False) -> np.ndarray:
    """H×W, H×W×1, 3 or 4 channels (OpenCV's BGR order unless ``rgb``) → H×W; other layouts refused."""
    import cv2

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return array
    channels = array.shape[2] if array.ndim == 3 else None
    if channels not in (3, 4):
        raise ImageReadError(label, f"unsupported channel layout {array.shape} (need grey, RGB or RGBA)")
    if array.dtype not in (np.uint8, np.uint16, np.float32):
        array = array.astype(np.float32)
    if channels == 3:
        code = cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY
    else:
        code = cv2.COLOR_RGBA2GRAY if rgb else cv2.COLOR_BGRA2GRAY
    return cv2.cvtColor(array, code)


def _scale(grey: np.ndarray, label: str) -> tuple[np.ndarray, int]:
    """Stored values → [0, 1] (see the module notes); returns the pixels and their significant bits."""
    if grey.dtype == np.uint8:
        return grey.astype(np.float32) / 255.0, 8
    if grey.dtype == np.uint16:
        bits = _significant_bits(int(grey.max()))
        return grey.astype(np.float32) / float(2**bits - 1), bits
    if grey.dtype == np.bool_:
        return grey.astype(np.float32), 1
    if np.issubdtype(grey.dtype, np.floating):
        values = grey.astype(np.float32)
        if not np.isfinite(values).all():
            raise ImageReadError(label, "contains NaN or infinite pixel values")
        lo, hi = float(values.min()), float(values.max())
        if lo >= 0.0 and hi <= 1.0:
            return values, 32
        return _min_max(values), 32
    raise ImageReadError(label, f"unsupported pixel type {grey.dtype}")


def _significant_bits(maximum: int) -> int:
    return next(b for b in (8, 10, 12, 14, 16) if maximum < 2**b)


def _min_max(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


def _check_size(height: int, width: int, label: str, max_pixels: int) -> None:
    if height < 1 or width < 1:
        raise ImageReadError(label, f"has no pixels ({width}×{height})")
    if height * width > max_pixels:
        raise ImageReadError(
            label,
            f"is {width}×{height} pixels, above the limit of {max_pixels} (a decompression bomb?)",
        )


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


# --- DICOM (pydicom) -----------------------------------------------------------------------------


def _decode_dicom(data: bytes, label: str, max_pixels: int) -> tuple[np.ndarray, int]:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_windowing, pixel_array

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, struct.error) as exc:
        raise ImageReadError(label, f"corrupt DICOM ({_first_line(exc)})") from None
    if "PixelData" not in ds:
        raise ImageReadError(label, "DICOM has no pixel data (PixelData element missing)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    _check_size(rows, cols, label, max_pixels)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        # multi-frame: decode frame 0 only (a long series would otherwise be decoded whole)
        array = pixel_array(ds, index=0 if frames > 1 else None)
    except Exception as exc:  # pydicom raises many types for missing codecs / bad data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        syntax_name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        raise ImageReadError(
            label, f"DICOM pixels cannot be decoded ({syntax_name}: {_first_line(exc)})"
        ) from None
    bits = int(ds.get("BitsStored", 8 * array.dtype.itemsize))
    if not photometric.startswith("MONOCHROME"):
        # colour DICOM (pydicom returns RGB); no modality/VOI transforms apply to colour data
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ImageReadError(label, f"unsupported DICOM layout {array.shape} ({photometric})")
        return _scale(_to_grey(array, label, rgb=True), label)
    if array.ndim != 2:
        raise ImageReadError(label, f"unsupported DICOM layout {array.shape} ({photometric})")
    try:
        values = apply_modality_lut(array, ds).astype(np.float64)
        if ds.get("VOILUTSequence"):
            pixels = _voi_lut_sequence(values, ds.VOILUTSequence[0])
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            # The window's output range is what it maps -inf/+inf to: scale by that, not by the data.
            with np.errstate(over="ignore"):  # a SIGMOID window saturates there
                lo, hi = apply_windowing(np.array([-1e12, 1e12]), ds, index=0).astype(float)
            values = apply_windowing(values, ds, index=0).astype(np.float64)
            pixels = ((values - lo) / (hi - lo)).astype(np.float32) if hi > lo else _min_max(values)
        else:
            pixels = _min_max(values)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, struct.error) as exc:
        raise ImageReadError(label, f"invalid DICOM grey-scale transform ({_first_line(exc)})") from None
    if photometric == "MONOCHROME1":
        pixels = 1.0 - pixels
    return pixels, bits


def _voi_lut_sequence(values: np.ndarray, item: Any) -> np.ndarray:
    """Apply a VOI LUT (PS3.3 C.11.2.1.1) and scale by its output range, ``2**bits - 1``.

    Done here rather than by pydicom, whose index array takes the LUT's entry type, so an 8-bit LUT
    with more than 256 entries (legal and common for 12-bit data) wraps around.
    """
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 2**16
    data = item.LUTData
    if isinstance(data, bytes):  # OW; little endian (big-endian transfer syntaxes are retired)
        lut = np.frombuffer(data, dtype="<u2", count=entries)
    else:
        lut = np.asarray(data if isinstance(data, Sequence) else [data], dtype=np.float64)
    if len(lut) < entries:
        raise ValueError(f"VOI LUT has {len(lut)} entries, its descriptor says {entries}")
    index = np.clip(np.rint(values - first), 0, entries - 1).astype(np.int64)
    return (lut[index].astype(np.float64) / float(2**bits - 1)).astype(np.float32)
