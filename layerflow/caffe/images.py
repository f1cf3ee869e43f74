"""Images as Caffe's data layers see them: decoded to planar (C, H, W) uint8 in OpenCV's BGR
channel order, and resized as cv::resize(INTER_LINEAR) does.

Caffe reads images with OpenCV: cv::imread / cv::imdecode give interleaved BGR (or gray), which
CVMatToDatum and the DataTransformer turn into planar C x H x W. Here Pillow decodes (the caffe
extra) and the channels are put in the same BGR order, so a net trained on Caffe's LMDBs or
image lists sees the channels where it saw them in Caffe:
    channels 3 (cv::IMREAD_COLOR): gray, palette and alpha images become 3-channel BGR;
    channels 1 (cv::IMREAD_GRAYSCALE): one channel, ITU-R 601 luma (0.299 R + 0.587 G
        + 0.114 B, as OpenCV's conversion; rounding may differ by one level), JPEGs decoded
        straight to gray by libjpeg as OpenCV does;
    channels None (cv::IMREAD_UNCHANGED, Caffe's "native" decoding of encoded Datums): the
        channels the file has, 1 (gray), 3 (BGR) or 4 (BGRA, for images with alpha).
16-bit images are brought to 8 bits by dropping the low byte, as OpenCV does for these flags.
JPEG decoders differ in their last bit between libjpeg builds, so a JPEG may decode a level
off Caffe's; PNG decodes exactly.

`resize(x, height, width)`: OpenCV's bilinear interpolation (INTER_LINEAR, what
convert_imageset --resize_* and ImageData's new_height/new_width use): pixel centres aligned
(source coordinate (d + 0.5) * in / out - 0.5), no antialiasing when shrinking, borders
replicated, 11-bit fixed-point weights as OpenCV uses for uint8 images. Pillow's bilinear
filter is not used: it widens its support when shrinking (antialiasing), which Caffe never did.
"""
from __future__ import annotations

import io
import math

import numpy as np
from numba import njit

from ..errors import UserError
from .proto import missing_extra

COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS
COEF_SCALE = 1 << COEF_BITS


def require_pillow(what: str):
    """Import PIL.Image or raise the UserError naming the caffe extra."""
    try:
        from PIL import Image
    except ImportError:
        raise missing_extra(what, "Pillow") from None
    return Image


def decode(data: bytes | str, channels: int | None, where: str) -> np.ndarray:
    """An image file's bytes (or its path) as (C, H, W) uint8 in BGR(A) order; `channels` 3,
    1 or None (as stored). A file Pillow cannot read is a UserError starting with `where`."""
    Image = require_pillow(f"{where}: decoding images")
    try:
        src = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        with Image.open(src) as image:
            if channels == 1 and image.format == "JPEG":
                image.draft("L", image.size)  # libjpeg's own gray output, as OpenCV asks for
            image.load()
            return _planar(image, channels)
    except FileNotFoundError as exc:
        raise UserError(f"{where}: file not found ({exc.filename})") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UserError(f"{where}: not an image Pillow can read ({exc})") from None


def _planar(image, channels: int | None) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        gray = (np.asarray(image).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
        if channels == 3:
            return np.repeat(gray[None], 3, axis=0)
        return gray[None]
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info)
    if channels is None:
        channels = 1 if mode in ("1", "L") else (4 if has_alpha else 3)
    if channels == 1:
        return np.asarray(image.convert("L"))[None].copy()
    rgb = np.asarray(image.convert("RGBA" if channels == 4 else "RGB"))
    order = [2, 1, 0, 3] if channels == 4 else [2, 1, 0]
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[order])


# ---- resize -------------------------------------------------------------------------------

def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output coordinate: the two source indices and their fixed-point weights, as
    OpenCV's resize computes them (float32 source coordinate, clamped at the borders)."""
    scale = n_in / n_out
    i0 = np.empty(n_out, np.int64)
    i1 = np.empty(n_out, np.int64)
    w = np.empty((n_out, 2), np.int64)
    for d in range(n_out):
        f = float(np.float32((d + 0.5) * scale - 0.5))
        s = math.floor(f)
        f -= s
        if s < 0:
            f, s = 0.0, 0
        if s >= n_in - 1:
            f, s = 0.0, n_in - 1
        i0[d], i1[d] = s, min(s + 1, n_in - 1)
        w[d, 0] = round((1.0 - f) * COEF_SCALE)
        w[d, 1] = round(f * COEF_SCALE)
    return i0, i1, w


@njit(cache=True, nogil=True)
def resize_kernel(x, y0, y1, wy, x0, x1, wx, out):
    """out[c, i, j] = (wy[i,0] * (wx[j,0] x[c,y0[i],x0[j]] + wx[j,1] x[c,y0[i],x1[j]])
                     + wy[i,1] * (wx[j,0] x[c,y1[i],x0[j]] + wx[j,1] x[c,y1[i],x1[j]])
                     + 2^21) >> 22, clipped to 0..255.
    x: (C, H, W) uint8; y0, y1: (h,), x0, x1: (w,) source indices; wy: (h, 2), wx: (w, 2)
    weights scaled by 2^11; out: (C, h, w) uint8."""
    c, h, w = out.shape
    shift = 2 * 11
    half = 1 << (shift - 1)
    for k in range(c):
        for i in range(h):
            a0 = y0[i]
            a1 = y1[i]
            for j in range(w):
                top = wx[j, 0] * np.int64(x[k, a0, x0[j]]) + wx[j, 1] * np.int64(x[k, a0, x1[j]])
                bot = wx[j, 0] * np.int64(x[k, a1, x0[j]]) + wx[j, 1] * np.int64(x[k, a1, x1[j]])
                v = (wy[i, 0] * top + wy[i, 1] * bot + half) >> shift
                out[k, i, j] = min(max(v, 0), 255)


def resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """(C, H, W) uint8 -> (C, height, width) uint8 by OpenCV's INTER_LINEAR (module
    docstring); the image itself when it already has that size."""
    c, h, w = x.shape
    if (h, w) == (height, width):
        return x
    y0, y1, wy = _taps(h, height)
    x0, x1, wx = _taps(w, width)
    out = np.empty((c, height, width), np.uint8)
    resize_kernel(np.ascontiguousarray(x), y0, y1, wy, x0, x1, wx, out)
    return out


def stack_or_list(samples: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """One array when the samples share shape and dtype, else the list (the transform crops
    images of several sizes to one)."""
    first = samples[0]
    if all(s.shape == first.shape and s.dtype == first.dtype for s in samples):
        return np.stack(samples)
    if any(s.dtype != first.dtype for s in samples):
        return [s.astype(np.float32) for s in samples]
    return samples
