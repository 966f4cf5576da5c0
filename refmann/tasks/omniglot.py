"""Omniglot for one-shot episodes: a NumPy PNG decoder, loaders of the shipped layout, label-delayed episodes.

Three layers, each usable alone:

- :func:`decode_png` reads the PNGs Omniglot ships (105 × 105, 1-bit grayscale) — and any
  non-interlaced PNG of bit depth 1, 2, 4 or 8 — with ``zlib`` and NumPy un-filtering (PNG filters
  0–4), checking the signature and every chunk's CRC. No Pillow.
- :func:`load_omniglot` reads ``SPLIT/ALPHABET/characterNN/NNNN_DD.png`` from a zip (as shipped)
  or an extracted folder; :func:`load_one_shot_runs` reads the 20 runs of ``all_runs.zip``.
- :func:`label_delayed_episodes` builds the episodes of Santoro et al. (2016) as the SAM paper
  (Rae et al. 2016) uses them, optionally with a small random affine distortion of every drawing
  (:func:`distort_drawings`); :func:`digits_episodes` builds the same episodes from
  scikit-learn's bundled digits, for machines without the Omniglot files.
- :class:`OneShotTask` (registered as ``"one_shot"``) is a trainable task of those episodes, on
  Omniglot or on the digits, with held-out characters for testing and the accuracy at the k-th
  presentation of a label (:meth:`OneShotTask.accuracy_by_instance`).

The data is never bundled: the loaders read a path the caller gives.
"""

from __future__ import annotations

import numbers
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np

from refmann._checks import as_float_array, check_bool, check_positive_int
from refmann.tasks._base import Batch, Task, error_rate

__all__ = [
    "DISTORTION",
    "Episodes",
    "OmniglotData",
    "OneShotRun",
    "OneShotTask",
    "area_resize",
    "decode_png",
    "digits_episodes",
    "distort_drawings",
    "instance_numbers",
    "label_delayed_episodes",
    "load_digits",
    "load_omniglot",
    "load_one_shot_runs",
]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_DEPTHS = {0: (1, 2, 4, 8), 2: (8,), 3: (1, 2, 4, 8), 4: (8,), 6: (8,)}  # the depths decoded here


# ---------------------------------------------------------------------------------------------
# PNG
# ---------------------------------------------------------------------------------------------


def _chunks(data: bytes):
    """Yield (type, payload) for every chunk, checking lengths and CRCs (PNG spec §5.3)."""
    pos = len(_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError(f"data: truncated PNG chunk header at byte {pos}")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 8 + length
        if end + 4 > len(data):
            raise ValueError(f"data: truncated PNG chunk {kind!r} at byte {pos}")
        payload = data[pos + 8 : end]
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(kind + payload) & 0xFFFFFFFF != crc:
            raise ValueError(f"data: CRC mismatch in PNG chunk {kind!r} at byte {pos}")
        yield kind, payload
        if kind == b"IEND":
            return
        pos = end + 4
    raise ValueError("data: PNG has no IEND chunk")


def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the per-scanline filters 0–4 (PNG spec §9); ``raw`` holds (filter byte, stride bytes) rows."""
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prior = np.zeros(stride, dtype=np.int64)  # the row above; zeros above the first row
    for y in range(height):
        kind = int(rows[y, 0])
        x = rows[y, 1:].astype(np.int64)
        if kind == 0:  # None
            cur = x
        elif kind == 1:  # Sub: Recon(x) = Filt(x) + Recon(a); lanes bpp apart are independent sums
            cur = np.empty_like(x)
            for lane in range(bpp):
                cur[lane::bpp] = np.cumsum(x[lane::bpp]) & 0xFF
        elif kind == 2:  # Up: Recon(x) = Filt(x) + Recon(b)
            cur = (x + prior) & 0xFF
        elif kind in (3, 4):  # Average, Paeth: each byte needs the one reconstructed bpp before it
            cur = x.copy()
            for i in range(stride):
                a = int(cur[i - bpp]) if i >= bpp else 0
                b = int(prior[i])
                if kind == 3:
                    pred = (a + b) >> 1
                else:
                    c = int(prior[i - bpp]) if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                cur[i] = (cur[i] + pred) & 0xFF
        else:
            raise ValueError(f"data: unknown PNG filter type {kind} in row {y} (expected 0-4)")
        out[y] = cur
        prior = cur
    return out


def decode_png(data: bytes) -> np.ndarray:
    """Decode a non-interlaced PNG of bit depth 1, 2, 4 or 8 into an array.

    Parameters
    ----------
    data : bytes
        The whole file.

    Returns
    -------
    image : ndarray
        Grayscale (colour type 0): shape (H, W); ``bool`` for bit depth 1 (as Pillow gives it),
        otherwise ``uint8`` raw sample values in ``[0, 2**depth)``. Palette (type 3): uint8
        (H, W, 3) RGB looked up in ``PLTE``. Gray+alpha, RGB, RGBA (types 4, 2, 6; depth 8):
        uint8 (H, W, C) with C = 2, 3, 4.

    Raises
    ------
    TypeError
        If ``data`` is not bytes.
    ValueError
        A bad signature or CRC, a truncated stream, a bit depth other than those above
        (16-bit is refused), interlacing, or an unknown filter type.

    Notes
    -----
    The IDAT payloads are concatenated and inflated with :mod:`zlib`; every scanline starts with
    a filter byte, and the filters 1–4 predict each byte from the reconstructed byte ``bpp``
    to its left (a), the one above (b) and the one above-left (c), where ``bpp`` is
    ``max(1, channels * depth / 8)``. Sub and Up are vectorised; Average and Paeth run a
    byte loop (each byte needs its reconstructed left neighbour).

    References
    ----------
    W3C (2003), *Portable Network Graphics (PNG) Specification, Second Edition*, §9 (filtering).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected the bytes of a PNG file, got {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(_SIGNATURE):
        raise ValueError(f"data: not a PNG (expected signature {_SIGNATURE!r}, got {data[:8]!r})")
    header = palette = None
    idat = []
    for kind, payload in _chunks(data):
        if kind == b"IHDR":
            if len(payload) != 13:
                raise ValueError(f"data: IHDR must hold 13 bytes, got {len(payload)}")
            header = struct.unpack(">IIBBBBB", payload)
        elif kind == b"PLTE":
            palette = np.frombuffer(payload, dtype=np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(payload)
    if header is None:
        raise ValueError("data: PNG has no IHDR chunk")
    width, height, depth, colour, compression, filter_method, interlace = header
    if width == 0 or height == 0:
        raise ValueError(f"data: PNG has an empty image ({width} x {height})")
    if colour not in _CHANNELS:
        raise ValueError(f"data: unknown PNG colour type {colour} (expected one of 0, 2, 3, 4, 6)")
    if depth not in _DEPTHS[colour]:
        raise ValueError(f"data: PNG bit depth {depth} with colour type {colour} is not supported "
                         f"(expected one of {_DEPTHS[colour]})")  # fmt: skip
    if compression != 0 or filter_method != 0:
        raise ValueError(f"data: unknown PNG compression/filter method {compression}/{filter_method} (expected 0/0)")
    if interlace != 0:
        raise ValueError("data: interlaced (Adam7) PNGs are not supported (expected interlace method 0)")
    if colour == 3 and palette is None:
        raise ValueError("data: palette PNG (colour type 3) without a PLTE chunk")
    if not idat:
        raise ValueError("data: PNG has no IDAT chunk")
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as err:
        raise ValueError(f"data: the PNG image data does not inflate ({err})") from None
    channels = _CHANNELS[colour]
    stride = (width * channels * depth + 7) // 8  # bytes per scanline, filter byte excluded
    if len(raw) != height * (stride + 1):
        raise ValueError(f"data: PNG image data holds {len(raw)} bytes, expected {height * (stride + 1)}")
    rows = _unfilter(np.frombuffer(raw, dtype=np.uint8), height, stride, max(1, channels * depth // 8))
    if depth < 8:  # unpack the samples of each row, big-endian within a byte; drop the row padding
        bits = np.unpackbits(rows, axis=1)[:, : width * depth].reshape(height, width, depth)
        weights = (1 << np.arange(depth - 1, -1, -1)).astype(np.uint8)
        samples = (bits * weights).sum(axis=2, dtype=np.uint8)  # (H, W)
    else:
        samples = rows.reshape(height, width, channels)
    if colour == 3:
        index = samples.reshape(height, width)
        if index.max() >= len(palette):
            raise ValueError(f"data: palette index {index.max()} outside PLTE of {len(palette)} entries")
        return palette[index]
    if channels == 1:
        samples = samples.reshape(height, width)
        return samples.astype(bool) if depth == 1 else samples
    return samples


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OmniglotData:
    """Omniglot drawings with their character and alphabet ids.

    Attributes
    ----------
    images : ndarray, shape (n, H, W)
        bool, **True where there is ink** (the files store strokes as 0 on a white 1 background;
        the loader inverts them, as Santoro et al. do).
    characters : ndarray, shape (n,)
        int64 character id of each drawing, in ``[0, C)``.
    drawers : ndarray, shape (n,)
        int64 drawer number from the file name ``NNNN_DD.png``.
    character_names : tuple of str, length C
        ``"ALPHABET/characterNN"`` for each id (ids follow the sorted names).
    character_alphabets : ndarray, shape (C,)
        int64 alphabet id of each character, an index into ``alphabets``.
    alphabets : tuple of str
        Sorted alphabet names.
    """

    images: np.ndarray  # (n, H, W)
    characters: np.ndarray  # (n,)
    drawers: np.ndarray  # (n,)
    character_names: tuple
    character_alphabets: np.ndarray  # (C,)
    alphabets: tuple

    @property
    def num_characters(self) -> int:
        return len(self.character_names)


class OneShotRun(NamedTuple):
    """One run of the 20-way one-shot classification test (Lake et al. 2015).

    ``test_labels[i]`` is the index into ``training`` of the class of ``test[i]``.
    """

    training: np.ndarray  # (20, H, W) bool, ink True
    test: np.ndarray  # (20, H, W) bool, ink True
    test_labels: np.ndarray  # (20,) int64


def _check_path(path, name: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a path (str or os.PathLike), got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{name}: {str(path)!r} does not exist (expected a .zip or a folder)")
    return path


def _png_files(path: Path):
    """(relative POSIX path, reader) for every .png under a folder or inside a zip, sorted by path."""
    if path.is_dir():
        files = sorted(path.rglob("*.png"))
        return [(PurePosixPath(f.relative_to(path).as_posix()), f.read_bytes) for f in files], None
    if not zipfile.is_zipfile(path):
        raise ValueError(f"path: {str(path)!r} is neither a folder nor a zip file")
    archive = zipfile.ZipFile(path)
    names = sorted(n for n in archive.namelist() if n.lower().endswith(".png"))
    return [(PurePosixPath(n), (lambda n=n: archive.read(n))) for n in names], archive


def _decode_ink(read, where) -> np.ndarray:
    try:
        image = decode_png(read())
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    if image.ndim != 2:
        raise ValueError(f"{where}: expected a grayscale PNG, got an image of shape {image.shape}")
    return image == 0 if image.dtype == bool else image < 128  # ink is dark


def load_omniglot(path) -> OmniglotData:
    """Load Omniglot drawings from a zip as shipped or an extracted folder.

    Parameters
    ----------
    path : str or os.PathLike
        ``images_background_small1.zip`` (or any zip/folder of the same layout): every PNG lies at
        ``…/ALPHABET/characterNN/NNNN_DD.png``, e.g. ``images_background_small1/Greek/character03/
        0396_07.png``. The full ``images_background`` / ``images_evaluation`` sets read the same way.

    Returns
    -------
    OmniglotData
        Drawings sorted by path; character ids follow the sorted ``ALPHABET/characterNN`` names.

    Raises
    ------
    ValueError
        A missing path, no PNGs, a PNG outside an ``ALPHABET/character`` folder, an undecodable
        PNG (named), or drawings of different sizes.

    References
    ----------
    Lake, Salakhutdinov & Tenenbaum (2015), *Human-level concept learning through probabilistic
    program induction*, Science 350:1332 (the dataset).
    """
    path = _check_path(path)
    files, archive = _png_files(path)
    try:
        if not files:
            raise ValueError(f"path: no .png files under {str(path)!r}")
        images, keys, drawers = [], [], []
        for rel, read in files:
            if len(rel.parts) < 3:
                raise ValueError(f"path: {str(rel)!r} is not inside an ALPHABET/CHARACTER folder")
            keys.append((rel.parts[-3], rel.parts[-2]))
            stem = rel.stem.rsplit("_", 1)
            drawers.append(int(stem[1]) if len(stem) == 2 and stem[1].isdigit() else -1)
            images.append(_decode_ink(read, f"path: {rel}"))
    finally:
        if archive is not None:
            archive.close()
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"path: drawings of different sizes {sorted(shapes)} (expected one size)")
    names = sorted(set(keys))
    alphabets = sorted({a for a, _ in names})
    char_id = {k: i for i, k in enumerate(names)}
    alpha_id = {a: i for i, a in enumerate(alphabets)}
    return OmniglotData(
        images=np.stack(images),
        characters=np.array([char_id[k] for k in keys], dtype=np.int64),
        drawers=np.array(drawers, dtype=np.int64),
        character_names=tuple(f"{a}/{c}" for a, c in names),
        character_alphabets=np.array([alpha_id[a] for a, _ in names], dtype=np.int64),
        alphabets=tuple(alphabets),
    )


def load_one_shot_runs(path) -> list[OneShotRun]:
    """Load the one-shot classification runs (``all_runs.zip`` or its extracted folder).

    Each ``runNN/`` holds ``training/classKK.png`` (one drawing per class), ``test/itemKK.png`` and
    ``class_labels.txt``, whose lines read ``runNN/test/itemKK.png runNN/training/classJJ.png``.

    Returns
    -------
    list of OneShotRun
        One per run, sorted by run name.
    """
    path = _check_path(path)
    archive = None
    if path.is_dir():

        def read(name):
            return (path / name).read_bytes()

        names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    else:
        if not zipfile.is_zipfile(path):
            raise ValueError(f"path: {str(path)!r} is neither a folder nor a zip file")
        archive = zipfile.ZipFile(path)
        read, names = archive.read, archive.namelist()
    try:
        label_files = sorted(n for n in names if PurePosixPath(n).name == "class_labels.txt")
        if not label_files:
            raise ValueError(f"path: no runNN/class_labels.txt under {str(path)!r}")
        runs = []
        for labels_name in label_files:
            root = PurePosixPath(labels_name).parent
            pairs = [line.split() for line in read(labels_name).decode().splitlines() if line.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError(f"path: {labels_name}: expected lines 'TEST_FILE TRAINING_FILE'")
            # the names in class_labels.txt are relative to the runs' parent folder
            base = root.parent
            train_names = sorted({t for _, t in pairs})
            train_index = {t: i for i, t in enumerate(train_names)}
            training = [_decode_ink(lambda t=t, base=base: read(str(base / t)), f"path: {t}") for t in train_names]
            test = [_decode_ink(lambda q=q, base=base: read(str(base / q)), f"path: {q}") for q, _ in pairs]
            runs.append(
                OneShotRun(
                    training=np.stack(training),
                    test=np.stack(test),
                    test_labels=np.array([train_index[t] for _, t in pairs], dtype=np.int64),
                )
            )
    finally:
        if archive is not None:
            archive.close()
    return runs


# ---------------------------------------------------------------------------------------------
# Episodes
# ---------------------------------------------------------------------------------------------


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights: the overlap of source pixel j with target pixel i, over the target's width."""
    edges_in = np.arange(n_in + 1, dtype=np.float64)  # source pixel j covers [j, j+1)
    edges_out = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    return np.clip(hi - lo, 0.0, None) / (n_in / n_out)


def area_resize(images, size: int) -> np.ndarray:
    """Resize (n, H, W) images to (n, size, size) by exact area averaging (box filter).

    Each output pixel is the mean of the source over its footprint, pixels cut by the
    footprint's edge counted by the fraction inside, so the mean intensity is preserved. Written as
    two matrix products, ``A_H @ image @ A_W^T``.
    """
    size = check_positive_int(size, "size")
    arr = np.asarray(images)
    if arr.ndim != 3:
        raise ValueError(f"images: expected shape (n, H, W), got {arr.shape}")
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.number)):
        raise TypeError(f"images: expected a bool or numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("images: expected finite values, got NaN/inf entries")
    rows = _area_matrix(arr.shape[1], size)  # (size, H)
    cols = _area_matrix(arr.shape[2], size)  # (size, W)
    return rows @ arr @ cols.T  # (n, size, size)


class Episodes(NamedTuple):
    """A time-major batch of label-delayed episodes (the fields of :class:`refmann.tasks.Batch` first).

    Attributes
    ----------
    inputs : ndarray, shape (T, B, size*size + C)
        ``[image_t flattened ; one-hot label of step t-1]`` (zeros for the label at t = 0).
    targets : ndarray, shape (T, B, C)
        One-hot label of step t.
    mask : ndarray, shape (T, B, C)
        Ones: every step is scored.
    labels : ndarray, shape (T, B)
        int64 label of step t (the argmax of ``targets``).
    classes : ndarray, shape (B, C)
        int64 source class shown under label c in episode b.
    rotations : ndarray, shape (B, C)
        Quarter turns (0–3) applied to label c's drawings in episode b.
    """

    inputs: np.ndarray  # (T, B, X)
    targets: np.ndarray  # (T, B, C)
    mask: np.ndarray  # (T, B, C)
    labels: np.ndarray  # (T, B)
    classes: np.ndarray  # (B, C)
    rotations: np.ndarray  # (B, C)

    @property
    def instances(self) -> np.ndarray:
        """(T, B) int64: how many times step t's label was shown before step t (0 = first sight)."""
        T, B = self.labels.shape
        counts = np.zeros((B, self.targets.shape[2]), dtype=np.int64)
        out = np.empty((T, B), dtype=np.int64)
        for t in range(T):
            out[t] = counts[np.arange(B), self.labels[t]]
            counts[np.arange(B), self.labels[t]] += 1
        return out


def instance_numbers(labels) -> np.ndarray:
    r"""The instance number of every step: 1 where its label is shown for the first time, k at the k-th time.

    Parameters
    ----------
    labels : ndarray, shape (T, B)
        Integer label of each step (``Episodes.labels``, or the ``targets`` of a
        :class:`OneShotTask` batch).

    Returns
    -------
    instances : ndarray, shape (T, B)
        int64, ``1 + Episodes.instances``: :math:`k_{tb} = 1 + |\{s < t : y_{sb} = y_{tb}\}|`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels: expected shape (T, B), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels: expected an integer array, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels: expected labels >= 0, got {labels.min()}")
    if labels.size == 0:
        return np.zeros(labels.shape, dtype=np.int64)
    onehot = labels[..., None] == np.arange(labels.max() + 1)  # (T, B, C)
    seen = np.cumsum(onehot, axis=0)  # (T, B, C): shows of each label up to and including t
    return np.take_along_axis(seen, labels[..., None], axis=2)[..., 0].astype(np.int64)


#: The ranges of the per-drawing distortion of :func:`label_delayed_episodes` (``distort=True``):
#: a rotation uniform in ±``angle_degrees``, a scale of each axis uniform in 1 ± ``scale``, a shift
#: of each axis uniform in ±``shift_pixels`` pixels of the ``size × size`` output.
DISTORTION = {"angle_degrees": 10.0, "scale": 0.1, "shift_pixels": 2.0}


def distort_drawings(images, *, angles, scales, shifts) -> np.ndarray:
    r"""Rotate, stretch and shift every drawing about its centre (bilinear, no ink outside the frame).

    Parameters
    ----------
    images : ndarray, shape (n, H, W)
        Float drawings, ink high.
    angles : ndarray, shape (n,)
        Rotation of each drawing in degrees (positive: counter-clockwise as displayed, rows down).
    scales : ndarray, shape (n, 2)
        Scale of each drawing along the rows and the columns (1 keeps the size; > 0).
    shifts : ndarray, shape (n, 2)
        Shift of each drawing in pixels, down and right.

    Returns
    -------
    distorted : ndarray, shape (n, H, W)
        float64. Identity parameters (0, (1, 1), (0, 0)) return the images unchanged.

    Notes
    -----
    With :math:`c` the centre of the frame, :math:`R_	heta` the rotation and :math:`S = \mathrm{diag}(s_y, s_x)`,
    output pixel :math:`p` reads the drawing at

    .. math::

        q = S^{-1} R_	heta^{	op} (p - c - d) + c,

    interpolated bilinearly with zero (no ink) outside the drawing — what
    :func:`scipy.ndimage.affine_transform` gives with ``order=1, mode="grid-constant"``, for all
    drawings at once in NumPy.

    References
    ----------
    Santoro et al. (2016), *One-shot Learning with Memory-Augmented Neural Networks*,
    arXiv:1605.06065 (per-sample rotations and translations of the Omniglot drawings).
    """
    images = as_float_array(images, "images", ndim=3)
    n, H, W = images.shape
    angles = as_float_array(angles, "angles", ndim=1)
    scales = as_float_array(scales, "scales", ndim=2)
    shifts = as_float_array(shifts, "shifts", ndim=2)
    for name, arr, shape in (("angles", angles, (n,)), ("scales", scales, (n, 2)), ("shifts", shifts, (n, 2))):
        if arr.shape != shape:
            raise ValueError(f"{name}: expected shape {shape} (one per image), got {arr.shape}")
    if np.any(scales <= 0):
        raise ValueError(f"scales: expected positive scales, got a minimum of {scales.min()}")
    theta = np.deg2rad(angles)
    cos, sin = np.cos(theta), np.sin(theta)
    # inverse map S^-1 R^T, R = [[cos, -sin], [sin, cos]] in (row, column) coordinates
    sy, sx = scales[:, 0, None, None], scales[:, 1, None, None]  # (n, 1, 1)
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    oy = np.arange(H, dtype=np.float64)[None, :, None] - (cy + shifts[:, 0, None, None])  # (n, H, 1): p - c - d
    ox = np.arange(W, dtype=np.float64)[None, None, :] - (cx + shifts[:, 1, None, None])  # (n, 1, W)
    c, s = cos[:, None, None], sin[:, None, None]
    # q = S^-1 R^T (p - c - d) + c with R = [[cos, -sin], [sin, cos]] in (row, column) coordinates;
    # read from the drawing framed by one row/column of zeros (+1), clipped to the frame so far points read 0
    y = np.clip((c * oy + s * ox) / sy + cy, -1.0, H) + 1.0  # (n, H, W)
    x = np.clip((c * ox - s * oy) / sx + cx, -1.0, W) + 1.0  # (n, H, W)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1))).ravel()  # (n (H+2) (W+2),)
    y0 = np.minimum(np.floor(y), H)
    x0 = np.minimum(np.floor(x), W)
    fy, fx = y - y0, x - x0  # (n, H, W) in [0, 1]
    frame = (np.arange(n) * ((H + 2) * (W + 2)))[:, None, None]  # where each padded drawing starts
    corner = (y0 * (W + 2) + x0).astype(np.int64) + frame  # (n, H, W) flat index of the top-left neighbour
    top = padded[corner]
    top += fx * (padded[corner + 1] - top)
    bottom = padded[corner + (W + 2)]
    bottom += fx * (padded[corner + (W + 3)] - bottom)
    return top + fy * (bottom - top)


def label_delayed_episodes(
    images,
    classes,
    *,
    num_classes: int,
    presentations: int = 10,
    size: int = 20,
    rng: np.random.Generator,
    batch_size: int = 1,
    rotate: bool = True,
    distort: bool = False,
) -> Episodes:
    r"""One-shot episodes with the label of the previous step in the input (Santoro et al. 2016).

    Per episode: draw ``num_classes`` distinct classes, give them a random permutation of the
    labels ``0..C-1``, turn each class by its own random multiple of 90° (class augmentation,
    ``rotate=True``), and show ``presentations`` distinct drawings of each, all ``C × presentations``
    steps in a random order.

    Parameters
    ----------
    images : ndarray, shape (n, H, W)
        Bool or float drawings (ink high, as :func:`load_omniglot` gives them).
    classes : ndarray, shape (n,)
        Integer class of each drawing.
    num_classes : int
        C, the classes per episode (5 in Santoro et al.'s main runs; SAM's curriculum grows it).
    presentations : int
        Drawings shown per class (10 in both papers). Only classes with at least this many drawings
        are drawn.
    size : int
        Drawings are area-resized to ``size × size`` (20 in Santoro et al.).
    rng : numpy.random.Generator
        The only source of randomness.
    batch_size : int
        B, independent episodes.
    rotate : bool
        Rotate each class by a random multiple of 90°.
    distort : bool
        Distort every shown drawing on its own (:func:`distort_drawings`): a rotation uniform in
        ±10°, a scale of each axis uniform in [0.9, 1.1] and a shift of each axis uniform in ±2
        pixels of the ``size × size`` output (:data:`DISTORTION`). The drawing is area-resized to
        ``2·size``, distorted there and block-averaged 2 × 2 down to ``size``. The distortions are
        drawn from ``rng`` after everything else, so an episode with ``distort=True`` has the
        labels, classes, rotations and drawings of the same seed's ``distort=False`` episode.

    Returns
    -------
    Episodes
        ``T = C × presentations`` steps.

    Notes
    -----
    With :math:`y_t` the label of step :math:`t` and :math:`e(\cdot)` a one-hot vector,

    .. math::

        x_t = [\,\mathrm{vec}(\mathrm{image}_t)\,;\; e(y_{t-1})\,], \qquad e(y_{-1}) = 0, \qquad
        \text{target}_t = e(y_t).

    Santoro et al. also rotate by small angles and shift each drawing (``distort=True``); the
    paper gives no ranges, so those of :data:`DISTORTION` are refmann's choice (a shift of 2 of 20
    pixels is about 10 of the 105 source pixels).

    References
    ----------
    Santoro et al. (2016), *One-shot Learning with Memory-Augmented Neural Networks*,
    arXiv:1605.06065.
    Rae et al. (2016), *Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes*,
    arXiv:1610.09027 (the Omniglot experiment).
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    presentations = check_positive_int(presentations, "presentations")
    size = check_positive_int(size, "size")
    batch_size = check_positive_int(batch_size, "batch_size")
    rotate = check_bool(rotate, "rotate")
    distort = check_bool(distort, "distort")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    arr = np.asarray(images)
    if arr.ndim != 3:
        raise ValueError(f"images: expected shape (n, H, W), got {arr.shape}")
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.number)):
        raise TypeError(f"images: expected a bool or numeric array, got dtype {arr.dtype}")
    if arr.dtype != bool and not np.all(np.isfinite(arr)):
        raise ValueError("images: expected finite values, got NaN/inf entries")
    cls = np.asarray(classes)
    if not np.issubdtype(cls.dtype, np.integer):
        raise TypeError(f"classes: expected an integer array, got dtype {cls.dtype}")
    if cls.shape != arr.shape[:1]:
        raise ValueError(f"classes: expected shape ({arr.shape[0]},) (one per image), got {cls.shape}")
    values, counts = np.unique(cls, return_counts=True)
    eligible = values[counts >= presentations]
    if len(eligible) < num_classes:
        raise ValueError(
            f"num_classes: expected at most {len(eligible)} (the classes with >= presentations = {presentations} "
            f"drawings), got {num_classes}"
        )
    C, P, T = num_classes, presentations, num_classes * presentations
    members = {c: np.flatnonzero(cls == c) for c in eligible}
    chosen = np.stack([rng.choice(eligible, size=C, replace=False) for _ in range(batch_size)])  # (B, C)
    turns = rng.integers(0, 4, size=(batch_size, C)) if rotate else np.zeros((batch_size, C), dtype=np.int64)
    labels = np.stack([rng.permutation(np.repeat(np.arange(C), P)) for _ in range(batch_size)], axis=1)  # (T, B)
    pick = np.empty((T, batch_size), dtype=np.int64)  # which drawing is shown at (t, b)
    for b in range(batch_size):
        for c in range(C):
            steps = np.flatnonzero(labels[:, b] == c)  # (P,)
            pick[steps, b] = rng.choice(members[chosen[b, c]], size=P, replace=False)
    used, where = np.unique(pick, return_inverse=True)
    if distort:
        big = area_resize(arr[used], 2 * size)[where.reshape(T, batch_size)]  # (T, B, 2 size, 2 size)
        a, m, d = DISTORTION["angle_degrees"], DISTORTION["scale"], DISTORTION["shift_pixels"]
        angles = rng.uniform(-a, a, size=T * batch_size)  # (T*B,)
        scales = rng.uniform(1.0 - m, 1.0 + m, size=(T * batch_size, 2))
        shifts = rng.uniform(-d, d, size=(T * batch_size, 2))
        moved = distort_drawings(
            big.reshape(T * batch_size, 2 * size, 2 * size), angles=angles, scales=scales, shifts=2.0 * shifts
        )
        small = moved.reshape(T, batch_size, size, 2, size, 2).mean(axis=(3, 5))  # (T, B, size, size)
    else:
        small = area_resize(arr[used], size)[where.reshape(T, batch_size)]  # (T, B, size, size)
    turn = turns[np.arange(batch_size)[None, :], labels]  # (T, B)
    for k in range(1, 4):
        hit = turn == k
        small[hit] = np.rot90(small[hit], k=k, axes=(1, 2))
    targets = np.zeros((T, batch_size, C))
    np.put_along_axis(targets, labels[..., None], 1.0, axis=2)
    previous = np.concatenate([np.zeros((1, batch_size, C)), targets[:-1]], axis=0)  # (T, B, C)
    inputs = np.concatenate([small.reshape(T, batch_size, size * size), previous], axis=2)
    return Episodes(inputs, targets, np.ones_like(targets), labels, chosen.astype(np.int64), turns.astype(np.int64))


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as ``(images, classes)``: float64 (1797, 8, 8) in [0, 1], int64 (1797,).

    Raises
    ------
    ImportError
        scikit-learn is not installed (``pip install 'refmann[experiments]'``).
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ImportError(
            "the digits stand-in needs scikit-learn: pip install 'refmann[experiments]' "
            "(or give an Omniglot folder or zip as data)"
        ) from None
    digits = sklearn_digits()
    return digits.images / 16.0, digits.target.astype(np.int64)


def digits_episodes(
    *,
    num_classes: int = 5,
    presentations: int = 10,
    size: int = 8,
    rng: np.random.Generator,
    batch_size: int = 1,
    rotate: bool = True,
    distort: bool = False,
) -> Episodes:
    """:func:`label_delayed_episodes` on scikit-learn's bundled digits (1,797 drawings of 8 × 8, 10 classes).

    The stand-in for machines without Omniglot: ``num_classes <= 10``; pixel values are scaled
    from 0–16 to [0, 1] before resizing (:func:`load_digits`).
    """
    images, classes = load_digits()
    return label_delayed_episodes(
        images,
        classes,
        num_classes=num_classes,
        presentations=presentations,
        size=size,
        rng=rng,
        batch_size=batch_size,
        rotate=rotate,
        distort=distort,
    )


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------

#: The splits of :class:`OneShotTask`.
SPLITS = ("train", "test", "all")
#: Every ``HOLD_OUT``-th character (Omniglot) or drawing (digits) is held out for ``split="test"``.
HOLD_OUT = 4


def _check_data_path(value, name: str):
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected None or a path to an Omniglot folder or zip, got {type(value).__name__}")
    if not Path(value).exists():
        raise ValueError(f"{name}: {str(value)!r} does not exist (expected an Omniglot folder or zip)")
    return value


@dataclass(frozen=True)
class OneShotTask(Task):
    r"""Label-delayed one-shot episodes (Santoro et al. 2016) as a trainable softmax task.

    Every sequence is one episode of :func:`label_delayed_episodes`: ``num_classes`` classes drawn
    afresh, labelled by a random permutation, ``presentations`` drawings of each in a random order;
    the input at step t is the drawing and the one-hot label of step t − 1, the target its label.
    Nothing but memory within the episode can tell the labels, so the first presentation of a label
    is right by chance and the later ones measure one-shot learning
    (:meth:`accuracy_by_instance`).

    Parameters
    ----------
    num_classes : int
        C, classes per episode (5 in Santoro et al.; the SAM paper goes up to 15 and more).
    presentations : int
        Drawings shown per class (10 in both papers): T = C × presentations steps.
    size : int
        Drawings are area-resized to ``size × size`` (20 in Santoro et al.; the digits are 8 × 8).
    data : str, optional
        An Omniglot folder or zip (:func:`load_omniglot`), e.g. ``images_background_small1.zip``.
        None: scikit-learn's bundled digits (:func:`load_digits`; needs scikit-learn).
    test_data : str, optional
        Omniglot only: a second set whose characters are the test split, e.g.
        ``images_background_small2.zip``; its characters whose ``ALPHABET/characterNN`` name is also
        in ``data`` are dropped (small1 and small2 share Greek and Latin).
    split : {"train", "test", "all"}
        Which drawings the episodes come from (see Notes).
    rotate : bool
        Turn each class by a random multiple of 90° per episode (Santoro et al.'s new classes).
    distort : bool
        A small random rotation, stretch and shift of every drawing (:data:`DISTORTION`).

    Notes
    -----
    The splits hold out **characters** on Omniglot, as Santoro et al. do (1,200 training, 423 test
    characters of the full background and evaluation sets):

    - with ``test_data``: ``"train"`` is every character of ``data``, ``"test"`` the characters of
      ``test_data`` not in ``data``, ``"all"`` both;
    - without it: a fixed character split of ``data``: character id i (ids follow the sorted
      ``ALPHABET/characterNN`` names) is a test character when ``i % 4 == 3`` — a quarter of each
      alphabet — and a training character otherwise; ``"all"`` is every character.

    On the **digits** a class split means nothing (10 classes, 5 drawn per episode), so the split
    holds out **drawings**: drawing i of the 1,797 is a test drawing when ``i % 4 == 3``. The test
    episodes then show classes seen in training, but drawings never seen, under labels that are
    again a fresh random permutation — the label binding still has to be learned within the episode.

    Inputs are float64 (T, B, size² + C); targets int64 labels (T, B); the mask float64 ones (T, B).
    The loss is ``"softmax_ce"``; the metric the episode label error rate (:func:`error_rate`).
    The drawings are loaded and resized once per task instance (:attr:`pool`), at ``2·size`` when
    ``distort`` (the resolution the distortion works at).

    Examples
    --------
    >>> task = OneShotTask(num_classes=3, presentations=2, size=8)  # the digits
    >>> batch = task.sample(4, np.random.default_rng(0))
    >>> batch.inputs.shape, batch.targets.shape, task.input_size, task.output_size
    ((6, 4, 67), (6, 4), 67, 3)

    References
    ----------
    Santoro et al. (2016), *One-shot Learning with Memory-Augmented Neural Networks*,
    arXiv:1605.06065.
    Rae et al. (2016), *Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes*,
    arXiv:1610.09027 (the Omniglot experiment, §4.4 and Supplementary).
    """

    num_classes: int = 5
    presentations: int = 10
    size: int = 20
    data: str | None = None
    test_data: str | None = None
    split: str = "train"
    rotate: bool = True
    distort: bool = False

    loss = "softmax_ce"
    metric_name = "label_errors"
    metric_label = "episode label error rate"
    metric_target = 0.2

    def __post_init__(self):
        for name in ("num_classes", "presentations", "size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name}: expected an integer >= 1, got {type(value).__name__} {value!r}")
            if value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value}")
        for name in ("rotate", "distort"):
            check_bool(getattr(self, name), name)
        if self.split not in SPLITS:
            raise ValueError(f"split: expected one of {', '.join(map(repr, SPLITS))}, got {self.split!r}")
        _check_data_path(self.data, "data")
        _check_data_path(self.test_data, "test_data")
        if self.test_data is not None and self.data is None:
            raise ValueError("test_data: expected None without data (the digits have no second set), got a path")
        if self.data is None and self.num_classes > 10:
            raise ValueError(f"num_classes: expected at most 10 (the digits' classes), got {self.num_classes}")

    # -- sizes ---------------------------------------------------------------------------------------
    @property
    def input_size(self) -> int:
        return self.size * self.size + self.num_classes

    @property
    def output_size(self) -> int:
        return self.num_classes

    @property
    def level_range(self) -> tuple[int, int]:
        return (1, 1)

    @property
    def steps(self) -> int:
        """T = num_classes × presentations."""
        return self.num_classes * self.presentations

    # -- the drawings --------------------------------------------------------------------------------
    def _select(self) -> tuple[np.ndarray, np.ndarray]:
        """(images, classes) of the split, at their stored resolution."""
        if self.data is None:
            images, classes = load_digits()
            test = np.arange(len(classes)) % HOLD_OUT == HOLD_OUT - 1
            keep = {"train": ~test, "test": test, "all": np.ones_like(test)}[self.split]
            return images[keep], classes[keep]
        main = load_omniglot(self.data)
        if self.test_data is None:
            test = np.arange(main.num_characters) % HOLD_OUT == HOLD_OUT - 1  # (C,) held-out characters
            keep = {"train": ~test, "test": test, "all": np.ones_like(test)}[self.split][main.characters]
            return main.images[keep], main.characters[keep]
        if self.split == "train":
            return main.images, main.characters
        other = load_omniglot(self.test_data)
        known = set(main.character_names)
        new = np.array([name not in known for name in other.character_names])  # (C',)
        keep = new[other.characters]
        images, classes = other.images[keep], other.characters[keep] + main.num_characters
        if images.shape[1:] != main.images.shape[1:] and self.split == "all":
            raise ValueError(
                f"test_data: drawings of {images.shape[1:]} pixels, data {main.images.shape[1:]} (expected one size)"
            )
        if self.split == "test":
            return images, classes
        return np.concatenate([main.images, images]), np.concatenate([main.characters, classes])

    @cached_property
    def pool(self) -> tuple[np.ndarray, np.ndarray]:
        """``(images, classes)`` the episodes are drawn from: float64 (n, s, s) with s = ``size`` (``2·size``
        with ``distort``), and int64 (n,). Loaded and resized on first use, then kept."""
        images, classes = self._select()
        side = 2 * self.size if self.distort else self.size
        eligible = np.sum(np.bincount(classes) >= self.presentations)
        if eligible < self.num_classes:
            raise ValueError(
                f"num_classes: expected at most {eligible} (the {self.split!r} classes with >= presentations = "
                f"{self.presentations} drawings), got {self.num_classes}"
            )
        return area_resize(images, side), np.asarray(classes, dtype=np.int64)

    # -- sampling ------------------------------------------------------------------------------------
    def sample_episodes(self, batch_size: int, rng: np.random.Generator, *, level: int | None = None) -> Episodes:
        """The episodes behind :meth:`sample`: the same rng state gives the same episodes, with their
        labels, source classes and rotations (for :meth:`accuracy_by_instance`)."""
        if level is not None and (isinstance(level, bool) or level != 1):
            raise ValueError(f"level: expected None or 1 (the task has one level), got {level!r}")
        images, classes = self.pool
        return label_delayed_episodes(
            images,
            classes,
            num_classes=self.num_classes,
            presentations=self.presentations,
            size=self.size,
            rng=rng,
            batch_size=batch_size,
            rotate=self.rotate,
            distort=self.distort,
        )

    def sample(self, batch_size: int, rng: np.random.Generator, *, level: int | None = None) -> Batch:
        """A batch of episodes: ``inputs`` float64 (T, B, size² + C), ``targets`` int64 labels (T, B),
        ``mask`` float64 ones (T, B), with T = ``num_classes × presentations``."""
        ep = self.sample_episodes(batch_size, rng, level=level)
        return Batch(ep.inputs, ep.labels, np.ones(ep.labels.shape))

    # -- metrics -------------------------------------------------------------------------------------
    instance_numbers = staticmethod(instance_numbers)

    def _check_logits(self, logits, labels) -> np.ndarray:
        logits = as_float_array(logits, "logits", ndim=3)
        expected = labels.shape + (self.num_classes,)
        if logits.shape != expected:
            raise ValueError(f"logits: expected shape {expected} (T, B, num_classes), got {logits.shape}")
        return logits

    def metric(self, logits, batch: Batch) -> np.ndarray:
        """Episode label error rate per sequence, shape (B,): :func:`error_rate` over every step."""
        if not isinstance(batch, Batch):
            raise TypeError(f"batch: expected a refmann.tasks.Batch, got {type(batch).__name__}")
        return error_rate(self._check_logits(logits, np.asarray(batch.targets)), batch)

    def accuracy_by_instance(self, logits, batch_or_episodes, instances=(1, 2, 5, 10)) -> dict[int, float]:
        r"""Accuracy at the k-th presentation of a label, over every episode of the batch.

        Parameters
        ----------
        logits : ndarray, shape (T, B, C)
            Class scores; the prediction is the argmax.
        batch_or_episodes : Batch or Episodes
            What the logits were computed for (a :class:`~refmann.tasks.Batch` of :meth:`sample` or
            the :class:`Episodes` of :meth:`sample_episodes`).
        instances : sequence of int
            The k to report, each in ``[1, presentations]``.

        Returns
        -------
        dict
            ``{k: accuracy}``, the fraction of steps with instance number k (:func:`instance_numbers`)
            whose argmax is the label. The 1st instance is a guess: a model that knows the
            labels already used in the episode scores at most the chance of picking among the rest.

        Notes
        -----
        .. math::

            a_k = \frac{\sum_{t,b} [k_{tb} = k]\,[\arg\max_y \ell_{tby} = y_{tb}]}{\sum_{t,b} [k_{tb} = k]}
        """
        if isinstance(batch_or_episodes, Episodes):
            labels = batch_or_episodes.labels
        elif isinstance(batch_or_episodes, Batch):
            labels = np.asarray(batch_or_episodes.targets)
        else:
            raise TypeError(
                f"batch_or_episodes: expected a Batch or an Episodes, got {type(batch_or_episodes).__name__}"
            )
        if isinstance(instances, (str, bytes)) or not hasattr(instances, "__iter__"):
            raise TypeError(f"instances: expected a sequence of ints, got {type(instances).__name__}")
        ks = [check_positive_int(k, "instances") for k in instances]
        bad = [k for k in ks if k > self.presentations]
        if bad:
            raise ValueError(f"instances: expected ints in [1, presentations = {self.presentations}], got {bad}")
        logits = self._check_logits(logits, labels)
        number = instance_numbers(labels)  # (T, B)
        right = np.argmax(logits, axis=-1) == labels  # (T, B)
        out = {}
        for k in ks:
            at = number == k
            if not at.any():
                raise ValueError(f"instances: no step shows a label for the {k}th time in these episodes")
            out[k] = float(right[at].mean())
        return out
