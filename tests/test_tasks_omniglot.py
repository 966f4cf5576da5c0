"""refmann/tasks/omniglot.py: the PNG decoder, the folder/zip loaders, label-delayed episodes."""

import io
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmann.tasks import Batch, OneShotTask, error_rate, make_task
from refmann.tasks.omniglot import (
    DISTORTION,
    Episodes,
    area_resize,
    decode_png,
    digits_episodes,
    distort_drawings,
    instance_numbers,
    label_delayed_episodes,
    load_digits,
    load_omniglot,
    load_one_shot_runs,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"
COLOUR_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


# --- a small PNG encoder: naive byte loops, the twin the decoder must invert -----------------


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter_row(kind, row, prior, bpp):
    out = []
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][kind]
        out.append((x - pred) % 256)
    return bytes([kind] + out)


def _chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def encode_png(samples, depth, filters, colour=0, interlace=0, palette=None):
    """PNG bytes of ``samples`` (H, W) or (H, W, C) ints, scanline y filtered with ``filters[y]``."""
    samples = np.asarray(samples, dtype=np.int64)
    H, W = samples.shape[:2]
    channels = 1 if samples.ndim == 2 else samples.shape[2]
    flat = samples.reshape(H, W * channels)
    rows = []
    for y in range(H):
        if depth < 8:
            bits = ((flat[y][:, None] >> np.arange(depth - 1, -1, -1)) & 1).ravel()
            rows.append([int(v) for v in np.packbits(bits.astype(np.uint8))])
        else:
            rows.append([int(v) for v in flat[y]])
    bpp = max(1, channels * depth // 8)
    raw, prior = b"", [0] * len(rows[0])
    for y, row in enumerate(rows):
        raw += _filter_row(filters[y], row, prior, bpp)
        prior = row
    header = struct.pack(">IIBBBBB", W, H, depth, colour, 0, 0, interlace)
    body = _chunk(b"IHDR", header)
    if palette is not None:
        body += _chunk(b"PLTE", np.asarray(palette, dtype=np.uint8).tobytes())
    body += _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@st.composite
def png_cases(draw, depths=(1, 2, 4, 8)):
    depth = draw(st.sampled_from(depths))
    colour = draw(st.sampled_from([0, 2, 4, 6])) if depth == 8 else 0
    H, W = draw(st.integers(1, 7)), draw(st.integers(1, 19))
    seed = draw(st.integers(0, 2**16))
    shape = (H, W) if colour == 0 else (H, W, COLOUR_CHANNELS[colour])
    samples = np.random.default_rng(seed).integers(0, 2**depth, size=shape)
    filters = draw(st.lists(st.integers(0, 4), min_size=H, max_size=H))
    return samples, depth, colour, filters


@given(png_cases())
def test_decode_png_inverts_every_filter_at_every_supported_depth(case):
    samples, depth, colour, filters = case
    image = decode_png(encode_png(samples, depth, filters, colour=colour))
    assert image.shape == samples.shape
    assert image.dtype == (bool if depth == 1 else np.uint8)
    np.testing.assert_array_equal(image.astype(np.int64), samples)


def test_decode_png_covers_filters_zero_to_four_on_one_image():
    """Each filter after a row of every other filter; small sample values force Paeth's ties (pa == pb, pb == pc)."""
    filters = [0, 1, 2, 3, 4, 4, 3, 4, 2, 4, 1, 4, 0, 4]
    for high in (256, 4):
        samples = np.random.default_rng(high).integers(0, high, size=(len(filters), 31))
        np.testing.assert_array_equal(decode_png(encode_png(samples, 8, filters)), samples)
    bits = np.random.default_rng(1).integers(0, 2, size=(len(filters), 13))
    np.testing.assert_array_equal(decode_png(encode_png(bits, 1, filters[::-1])), bits.astype(bool))


def test_decode_png_looks_up_the_palette():
    palette = np.array([[0, 0, 0], [255, 0, 0], [10, 20, 30], [1, 2, 3]])
    index = np.random.default_rng(2).integers(0, 4, size=(4, 6))
    image = decode_png(encode_png(index, 2, [1, 2, 3, 4], colour=3, palette=palette))
    np.testing.assert_array_equal(image, palette[index])


@settings(max_examples=10)
@given(png_cases(depths=(1, 8)))
def test_decode_png_agrees_with_pillow(case):
    Image = pytest.importorskip("PIL.Image")
    samples, depth, colour, filters = case
    data = encode_png(samples, depth, filters, colour=colour)
    np.testing.assert_array_equal(decode_png(data), np.array(Image.open(io.BytesIO(data))))


def _valid_png():
    return encode_png(np.eye(4, dtype=int), 1, [0, 1, 2, 3])


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: b"GIF89a" + d[6:], "not a PNG"),
        (lambda d: d[:30] + bytes([d[30] ^ 1]) + d[31:], "CRC mismatch"),
        (lambda d: d[:-20], "truncated|IEND"),
        (lambda d: encode_png(np.zeros((2, 2), int), 8, [0, 0])[:25] + b"\x10" + b"", "truncated"),
        (lambda d: encode_png(np.eye(3, dtype=int), 1, [0, 0, 0], interlace=1), "interlaced"),
        (lambda d: encode_png(np.eye(3, dtype=int), 8, [0, 0, 0], colour=3), "without a PLTE"),
    ],
    ids=["signature", "crc", "truncated", "cut-header", "interlaced", "no-palette"],
)
def test_decode_png_refuses_broken_files_with_a_clear_error(mutate, match):
    with pytest.raises(ValueError, match=match):
        decode_png(mutate(_valid_png()))


def test_decode_png_refuses_16_bit_and_unknown_filters():
    header = struct.pack(">IIBBBBB", 2, 2, 16, 0, 0, 0, 0)
    raw = b"\x00" + b"\x00" * 4
    sixteen = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw * 2))
    with pytest.raises(ValueError, match="bit depth 16"):
        decode_png(sixteen + _chunk(b"IEND", b""))
    bad = bytearray(zlib.decompress(zlib.compress(b"\x05\x00")))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(bad)))
    with pytest.raises(ValueError, match="filter type 5"):
        decode_png(png + _chunk(b"IEND", b""))
    with pytest.raises(TypeError, match="data: expected the bytes"):
        decode_png("not bytes")


# --- loaders ---------------------------------------------------------------------------------

GLYPHS = {("Alpha", "character01"): 3, ("Alpha", "character02"): 2, ("Beta", "character01"): 4}


def _write_tree(root: Path):
    """SPLIT/ALPHABET/characterNN/NNNN_DD.png with glyph g of character k drawn as ink at (k, g)."""
    rng = np.random.default_rng(0)
    truth = {}
    for k, ((alphabet, char), n) in enumerate(sorted(GLYPHS.items())):
        folder = root / "split" / alphabet / char
        folder.mkdir(parents=True)
        for d in range(1, n + 1):
            ink = rng.random((6, 7)) < 0.3
            (folder / f"{k:04d}_{d:02d}.png").write_bytes(encode_png(~ink, 1, [d % 5] * 6))  # white 1 = paper
            truth[(alphabet, char, d)] = ink
    return truth


def _check_tree(data, truth):
    assert data.images.shape == (sum(GLYPHS.values()), 6, 7) and data.images.dtype == bool
    assert data.alphabets == ("Alpha", "Beta")
    assert data.character_names == ("Alpha/character01", "Alpha/character02", "Beta/character01")
    np.testing.assert_array_equal(data.character_alphabets, [0, 0, 1])
    np.testing.assert_array_equal(np.bincount(data.characters), [3, 2, 4])
    for image, c, d in zip(data.images, data.characters, data.drawers):
        alphabet, char = data.character_names[c].split("/")
        np.testing.assert_array_equal(image, truth[(alphabet, char, d)])


def test_load_omniglot_reads_a_generated_folder_tree_with_the_right_ids(tmp_path):
    truth = _write_tree(tmp_path)
    _check_tree(load_omniglot(tmp_path), truth)
    _check_tree(load_omniglot(tmp_path / "split"), truth)


def test_load_omniglot_reads_the_same_tree_zipped(tmp_path):
    truth = _write_tree(tmp_path / "tree")
    with zipfile.ZipFile(tmp_path / "split.zip", "w") as archive:
        for f in sorted((tmp_path / "tree").rglob("*.png")):
            archive.write(f, f.relative_to(tmp_path / "tree").as_posix())
    _check_tree(load_omniglot(tmp_path / "split.zip"), truth)


def test_load_omniglot_refuses_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_omniglot(tmp_path / "missing")
    with pytest.raises(ValueError, match="no .png files"):
        load_omniglot(tmp_path)
    (tmp_path / "x.png").write_bytes(_valid_png())
    with pytest.raises(ValueError, match="ALPHABET/CHARACTER"):
        load_omniglot(tmp_path)
    with pytest.raises(TypeError, match="path: expected a path"):
        load_omniglot(3)
    broken = tmp_path / "a" / "b" / "c"
    broken.mkdir(parents=True)
    (broken / "0001_01.png").write_bytes(b"junk")
    (tmp_path / "x.png").unlink()
    with pytest.raises(ValueError, match="0001_01.png: data: not a PNG"):
        load_omniglot(tmp_path)


def test_load_one_shot_runs_reads_a_generated_run(tmp_path):
    rng = np.random.default_rng(3)
    run = tmp_path / "run01"
    (run / "training").mkdir(parents=True)
    (run / "test").mkdir()
    inks = rng.random((3, 4, 5)) < 0.5
    answer = [2, 0, 1, 2]
    for k in range(3):
        (run / "training" / f"class{k + 1:02d}.png").write_bytes(encode_png(~inks[k], 1, [0] * 4))
    lines = []
    for i, k in enumerate(answer):
        (run / "test" / f"item{i + 1:02d}.png").write_bytes(encode_png(~inks[k], 1, [1] * 4))
        lines.append(f"run01/test/item{i + 1:02d}.png run01/training/class{k + 1:02d}.png")
    (run / "class_labels.txt").write_text("\n".join(lines) + "\n")
    (runs,) = load_one_shot_runs(tmp_path)
    np.testing.assert_array_equal(runs.test_labels, answer)
    np.testing.assert_array_equal(runs.training, inks)
    np.testing.assert_array_equal(runs.test, inks[answer])


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data/omniglot is absent (CI clones have no ../shared)")
def test_real_small1_zip_has_2720_drawings_of_136_characters():
    data = load_omniglot(DATA / "images_background_small1.zip")
    assert data.images.shape == (2720, 105, 105)
    assert data.num_characters == 136
    assert data.alphabets == ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin")
    np.testing.assert_array_equal(np.bincount(data.characters), np.full(136, 20))
    assert 0 < data.images.mean() < 0.5  # ink is the minority once inverted


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data/omniglot is absent (CI clones have no ../shared)")
def test_real_one_shot_runs_are_20_runs_of_20_way_classification():
    runs = load_one_shot_runs(DATA / "all_runs.zip")
    assert len(runs) == 20
    for run in runs:
        assert run.training.shape == run.test.shape == (20, 105, 105)
        assert sorted(run.test_labels) == list(range(20))


# --- episodes --------------------------------------------------------------------------------


def _pool(n_classes=7, per_class=12, side=10, seed=0):
    """Distinct random drawings, so each shown image identifies its source and rotation."""
    rng = np.random.default_rng(seed)
    images = rng.random((n_classes * per_class, side, side))
    return images, np.repeat(np.arange(n_classes), per_class)


@given(C=st.integers(1, 5), P=st.integers(1, 6), B=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_episodes_delay_the_label_by_one_step_and_show_each_label_presentations_times(C, P, B, seed):
    images, classes = _pool()
    ep = label_delayed_episodes(
        images, classes, num_classes=C, presentations=P, size=5, rng=np.random.default_rng(seed), batch_size=B
    )
    T = C * P
    assert ep.inputs.shape == (T, B, 25 + C) and ep.targets.shape == ep.mask.shape == (T, B, C)
    np.testing.assert_array_equal(ep.inputs[0, :, 25:], 0)
    np.testing.assert_array_equal(ep.inputs[1:, :, 25:], ep.targets[:-1])
    np.testing.assert_array_equal(ep.targets.argmax(axis=2), ep.labels)
    np.testing.assert_array_equal(ep.targets.sum(axis=2), 1)
    for b in range(B):
        np.testing.assert_array_equal(np.bincount(ep.labels[:, b], minlength=C), np.full(C, P))
        assert len(set(ep.classes[b])) == C  # distinct source classes behind the C labels
    np.testing.assert_array_equal(np.sort(ep.instances, axis=0)[-1], np.full(B, P - 1))


@given(seed=st.integers(0, 2**16))
def test_episode_images_are_the_resized_drawings_of_their_class_turned_by_its_rotation(seed):
    images, classes = _pool()
    ep = label_delayed_episodes(
        images, classes, num_classes=4, presentations=3, size=5, rng=np.random.default_rng(seed), batch_size=2
    )
    small = area_resize(images, 5)
    for t in range(ep.labels.shape[0]):
        for b in range(2):
            c = ep.labels[t, b]
            shown = ep.inputs[t, b, :25].reshape(5, 5)
            candidates = np.rot90(small[classes == ep.classes[b, c]], k=ep.rotations[b, c], axes=(1, 2))
            assert np.any(np.all(np.isclose(candidates, shown), axis=(1, 2)))


def test_labels_are_a_random_permutation_of_the_classes_across_episodes():
    images, classes = _pool()
    ep = label_delayed_episodes(
        images, classes, num_classes=3, presentations=2, rng=np.random.default_rng(0), size=4, batch_size=60
    )
    first = [tuple(ep.classes[b]) for b in range(60)]
    assert len(set(first)) > 10  # neither the classes nor their order are fixed
    assert set(ep.rotations.ravel()) == {0, 1, 2, 3}
    flat = label_delayed_episodes(
        images,
        classes,
        num_classes=3,
        presentations=2,
        rng=np.random.default_rng(0),
        size=4,
        batch_size=5,
        rotate=False,
    )
    np.testing.assert_array_equal(flat.rotations, 0)


def test_area_resize_preserves_the_mean_and_averages_blocks_at_integer_factors():
    x = np.random.default_rng(0).random((3, 12, 12))
    np.testing.assert_allclose(area_resize(x, 4), x.reshape(3, 4, 3, 4, 3).mean(axis=(2, 4)))
    np.testing.assert_allclose(area_resize(x, 5).mean(axis=(1, 2)), x.mean(axis=(1, 2)))
    np.testing.assert_allclose(area_resize(x, 12), x)


def test_digits_episodes_give_ten_way_episodes_from_sklearn():
    ep = digits_episodes(num_classes=10, presentations=2, rng=np.random.default_rng(0), batch_size=2)
    assert ep.inputs.shape == (20, 2, 64 + 10)
    assert 0 <= ep.inputs.min() and ep.inputs.max() <= 1
    with pytest.raises(ValueError, match="num_classes: expected at most 10"):
        digits_episodes(num_classes=11, rng=np.random.default_rng(0))


def test_episodes_refuse_bad_arguments():
    images, classes = _pool()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="num_classes: expected at most 7"):
        label_delayed_episodes(images, classes, num_classes=8, presentations=2, rng=rng)
    with pytest.raises(ValueError, match="num_classes: expected at most 0"):
        label_delayed_episodes(images, classes, num_classes=2, presentations=13, rng=rng)
    nan = images.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="images: expected finite"):
        label_delayed_episodes(nan, classes, num_classes=2, rng=rng)
    with pytest.raises(ValueError, match="classes: expected shape"):
        label_delayed_episodes(images, classes[:-1], num_classes=2, rng=rng)
    with pytest.raises(TypeError, match="classes: expected an integer"):
        label_delayed_episodes(images, classes.astype(float), num_classes=2, rng=rng)
    with pytest.raises(TypeError, match="rng: expected a numpy.random.Generator"):
        label_delayed_episodes(images, classes, num_classes=2, rng=0)
    with pytest.raises(ValueError, match="presentations: expected an int >= 1"):
        label_delayed_episodes(images, classes, num_classes=2, presentations=0, rng=rng)
    with pytest.raises(ValueError, match="images: expected shape"):
        label_delayed_episodes(images[0], classes, num_classes=2, rng=rng)


# --- per-drawing distortion ------------------------------------------------------------------


def test_distort_false_gives_the_episodes_of_before():
    """Values recorded from label_delayed_episodes before ``distort`` existed (same seed, same pool)."""
    images, classes = _pool()
    kwargs = dict(num_classes=4, presentations=3, size=5, batch_size=3)
    ep = label_delayed_episodes(images, classes, rng=np.random.default_rng(5), **kwargs)
    np.testing.assert_array_equal(ep.labels[:, 0], [0, 2, 0, 2, 3, 3, 1, 2, 3, 1, 1, 0])
    np.testing.assert_array_equal(ep.classes, [[2, 0, 5, 4], [0, 1, 6, 4], [4, 6, 5, 0]])
    np.testing.assert_array_equal(ep.rotations, [[2, 3, 0, 1], [1, 1, 3, 0], [3, 3, 3, 0]])
    np.testing.assert_allclose(ep.inputs.sum(), 484.34210086176176, rtol=1e-12)
    same = label_delayed_episodes(images, classes, rng=np.random.default_rng(5), distort=False, **kwargs)
    for a, b in zip(ep, same, strict=True):
        np.testing.assert_array_equal(a, b)


def _centred_pool(n_classes=6, per_class=8, side=24, seed=0):
    """Random ink confined to the middle half of the frame, so a small distortion keeps it all inside."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n_classes * per_class, side, side))
    q = side // 4
    images[:, q : side - q, q : side - q] = rng.random((n_classes * per_class, side - 2 * q, side - 2 * q)) < 0.4
    return images, np.repeat(np.arange(n_classes), per_class)


@given(seed=st.integers(0, 2**16))
def test_distort_is_deterministic_and_changes_only_the_drawings(seed):
    images, classes = _centred_pool()
    kwargs = dict(num_classes=3, presentations=4, size=12, batch_size=2)
    plain = label_delayed_episodes(images, classes, rng=np.random.default_rng(seed), **kwargs)
    one = label_delayed_episodes(images, classes, rng=np.random.default_rng(seed), distort=True, **kwargs)
    two = label_delayed_episodes(images, classes, rng=np.random.default_rng(seed), distort=True, **kwargs)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)
    for name in ("labels", "classes", "rotations", "targets", "mask"):
        np.testing.assert_array_equal(getattr(one, name), getattr(plain, name))
    np.testing.assert_array_equal(one.inputs[..., 144:], plain.inputs[..., 144:])  # the delayed labels
    shown, base = one.inputs[..., :144], plain.inputs[..., :144]
    assert not np.allclose(shown, base)
    assert shown.min() >= 0.0 and shown.max() <= 1.0 + 1e-12
    # rotation and shift keep the ink; each axis' scale in [0.9, 1.1] multiplies it by at most 1.1**2
    ratio = shown.sum(axis=2) / base.sum(axis=2)
    assert np.all((ratio > 0.9**2 - 0.05) & (ratio < 1.1**2 + 0.05))


def _affine_twin(image, angle, scale, shift):
    """One drawing through scipy.ndimage.affine_transform: the obviously-correct twin of distort_drawings."""
    from scipy.ndimage import affine_transform

    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    inverse = np.linalg.inv(rotation @ np.diag(scale))
    centre = (np.array(image.shape) - 1) / 2.0
    offset = centre - inverse @ (centre + shift)
    return affine_transform(image, inverse, offset=offset, order=1, mode="grid-constant", cval=0.0)


@given(
    seed=st.integers(0, 2**16),
    n=st.integers(1, 4),
    shape=st.tuples(st.integers(2, 9), st.integers(2, 9)),
    wild=st.booleans(),
)
def test_distort_drawings_matches_scipy_affine_transform_drawing_by_drawing(seed, n, shape, wild):
    rng = np.random.default_rng(seed)
    images = rng.random((n, *shape))
    reach = 5.0 if wild else 1.0  # wild: large turns and shifts that read far outside the frame
    angles = rng.uniform(-90 * reach, 90 * reach, n)
    scales = rng.uniform(0.5, 1.5, (n, 2))
    shifts = rng.uniform(-3 * reach, 3 * reach, (n, 2))
    out = distort_drawings(images, angles=angles, scales=scales, shifts=shifts)
    for i in range(n):
        np.testing.assert_allclose(out[i], _affine_twin(images[i], angles[i], scales[i], shifts[i]), atol=1e-12)


@given(dy=st.integers(-3, 3), dx=st.integers(-3, 3), seed=st.integers(0, 2**16))
def test_distort_drawings_is_the_identity_at_zero_and_moves_ink_by_whole_pixels(dy, dx, seed):
    images = np.zeros((2, 12, 12))
    images[:, 3:9, 3:9] = np.random.default_rng(seed).random((2, 6, 6))
    keep = distort_drawings(images, angles=np.zeros(2), scales=np.ones((2, 2)), shifts=np.zeros((2, 2)))
    np.testing.assert_allclose(keep, images, atol=1e-12)
    moved = distort_drawings(images, angles=np.zeros(2), scales=np.ones((2, 2)), shifts=np.tile([dy, dx], (2, 1)))
    np.testing.assert_allclose(moved, np.roll(images, (dy, dx), axis=(1, 2)), atol=1e-12)


def test_distort_drawings_turns_counter_clockwise_as_documented():
    image = np.zeros((1, 5, 5))
    image[0, 2, 4] = 1.0  # right of the centre
    turned = distort_drawings(image, angles=np.array([90.0]), scales=np.ones((1, 2)), shifts=np.zeros((1, 2)))
    expected = np.zeros((5, 5))
    expected[0, 2] = 1.0  # above the centre (rows go down)
    np.testing.assert_allclose(turned[0], expected, atol=1e-12)


def test_distortion_ranges_are_the_documented_ones():
    assert DISTORTION == {"angle_degrees": 10.0, "scale": 0.1, "shift_pixels": 2.0}


def test_distort_drawings_refuses_bad_parameters():
    x = np.zeros((2, 4, 4))
    ok = dict(angles=np.zeros(2), scales=np.ones((2, 2)), shifts=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="angles: expected shape"):
        distort_drawings(x, **{**ok, "angles": np.zeros(3)})
    with pytest.raises(ValueError, match="scales: expected positive"):
        distort_drawings(x, **{**ok, "scales": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="shifts"):
        distort_drawings(x, **{**ok, "shifts": np.full((2, 2), np.nan)})
    with pytest.raises(ValueError, match="images"):
        distort_drawings(np.zeros((4, 4)), **ok)
    images, classes = _pool()
    with pytest.raises(TypeError, match="distort: expected True or False"):
        label_delayed_episodes(images, classes, num_classes=2, rng=np.random.default_rng(0), distort="yes")


# --- instance numbers ------------------------------------------------------------------------


@given(T=st.integers(1, 12), B=st.integers(1, 3), C=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_instance_numbers_count_the_shows_of_each_label_so_far(T, B, C, seed):
    labels = np.random.default_rng(seed).integers(0, C, (T, B))
    naive = np.zeros((T, B), dtype=np.int64)
    for b in range(B):
        for t in range(T):
            naive[t, b] = 1 + sum(labels[s, b] == labels[t, b] for s in range(t))
    got = instance_numbers(labels)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, naive)


def test_instance_numbers_are_one_more_than_episodes_instances():
    images, classes = _pool()
    ep = label_delayed_episodes(images, classes, num_classes=3, presentations=4, rng=np.random.default_rng(1), size=4)
    np.testing.assert_array_equal(instance_numbers(ep.labels), ep.instances + 1)
    with pytest.raises(ValueError, match="labels: expected shape"):
        instance_numbers(ep.labels[:, 0])
    with pytest.raises(TypeError, match="labels: expected an integer"):
        instance_numbers(ep.labels.astype(float))


# --- the task --------------------------------------------------------------------------------


@given(C=st.integers(1, 5), P=st.integers(1, 4), B=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_one_shot_batches_have_the_documented_shapes_dtypes_and_label_delay(C, P, B, seed):
    task = OneShotTask(num_classes=C, presentations=P, size=6)
    batch = task.sample(B, np.random.default_rng(seed))
    T = C * P
    assert isinstance(batch, Batch) and task.input_size == 36 + C and task.output_size == C and task.steps == T
    assert batch.inputs.shape == (T, B, 36 + C) and batch.inputs.dtype == np.float64
    assert batch.targets.shape == (T, B) and batch.targets.dtype == np.int64
    assert batch.mask.shape == (T, B) and batch.mask.dtype == np.float64 and np.all(batch.mask == 1.0)
    delayed = batch.inputs[:, :, 36:]  # the label part of the input
    np.testing.assert_array_equal(delayed[0], 0.0)
    np.testing.assert_array_equal(delayed[1:], np.eye(C)[batch.targets[:-1]])  # input label at t = target at t-1
    numbers = task.instance_numbers(batch.targets)
    for b in range(B):
        for c in range(C):  # label c is shown P times, as its 1st, 2nd, ..., P-th instance
            np.testing.assert_array_equal(np.sort(numbers[batch.targets[:, b] == c, b]), np.arange(1, P + 1))


def test_sample_and_sample_episodes_draw_the_same_episodes():
    task = OneShotTask(num_classes=4, presentations=3, size=8)
    batch = task.sample(5, np.random.default_rng(9))
    ep = task.sample_episodes(5, np.random.default_rng(9))
    assert isinstance(ep, Episodes)
    np.testing.assert_array_equal(batch.inputs, ep.inputs)
    np.testing.assert_array_equal(batch.targets, ep.labels)
    distorted = OneShotTask(num_classes=4, presentations=3, size=8, distort=True)
    assert distorted.pool[0].shape[1:] == (16, 16)  # stored at 2 size for the distortion
    d = distorted.sample(5, np.random.default_rng(9))
    np.testing.assert_array_equal(d.targets, batch.targets)
    assert not np.allclose(d.inputs, batch.inputs)


def test_the_pool_is_loaded_once_per_task():
    task = OneShotTask(num_classes=2, presentations=2, size=8)
    first = task.pool
    task.sample(2, np.random.default_rng(0))
    assert task.pool is first


def test_digits_splits_hold_out_every_fourth_drawing():
    images, classes = load_digits()
    test = np.arange(len(classes)) % 4 == 3
    pools = {split: OneShotTask(size=8, split=split).pool for split in ("train", "test", "all")}
    np.testing.assert_allclose(pools["train"][0], images[~test])
    np.testing.assert_allclose(pools["test"][0], images[test])
    np.testing.assert_array_equal(pools["all"][1], classes)
    assert len(pools["train"][1]) + len(pools["test"][1]) == len(classes)


def _past_only_oracle(ep: Episodes) -> np.ndarray:
    """Logits of a learner that knows which drawings share a class but only the labels it has been shown.

    At a label's first show it guesses the lowest label not revealed yet; later it names the label
    revealed (one step late) for that class.
    """
    T, B = ep.labels.shape
    C = ep.targets.shape[2]
    logits = np.zeros((T, B, C))
    for b in range(B):
        known = {}  # class -> label, learned from the delayed input
        for t in range(T):
            if t > 0:
                known[ep.classes[b, ep.labels[t - 1, b]]] = int(np.argmax(ep.inputs[t, b, -C:]))
            cls = ep.classes[b, ep.labels[t, b]]
            guess = known[cls] if cls in known else min(set(range(C)) - set(known.values()))
            logits[t, b, guess] = 1.0
    return logits


@given(seed=st.integers(0, 2**16), C=st.integers(2, 5))
def test_accuracy_by_instance_of_a_past_only_oracle_is_one_after_the_first_show(seed, C):
    task = OneShotTask(num_classes=C, presentations=3, size=4)
    ep = task.sample_episodes(3, np.random.default_rng(seed))
    logits = _past_only_oracle(ep)
    acc = task.accuracy_by_instance(logits, ep, instances=(1, 2, 3))
    assert acc[2] == acc[3] == 1.0
    first = instance_numbers(ep.labels) == 1
    assert acc[1] == np.mean(np.argmax(logits, -1)[first] == ep.labels[first])
    batch = Batch(ep.inputs, ep.labels, np.ones(ep.labels.shape))
    assert task.accuracy_by_instance(logits, batch, instances=(1, 2, 3)) == acc


@given(seed=st.integers(0, 2**16))
def test_accuracy_by_instance_counts_exactly_the_constructed_right_answers(seed):
    task = OneShotTask(num_classes=3, presentations=4, size=4)
    rng = np.random.default_rng(seed)
    ep = task.sample_episodes(4, rng)
    right = rng.random(ep.labels.shape) < 0.5  # (T, B): where the constructed logits name the label
    wrong = (ep.labels + rng.integers(1, 3, ep.labels.shape)) % 3
    logits = np.eye(3)[np.where(right, ep.labels, wrong)] * 2.0 - 1.0
    numbers = instance_numbers(ep.labels)
    acc = task.accuracy_by_instance(logits, ep, instances=(1, 2, 3, 4))
    for k in (1, 2, 3, 4):
        hits = [right[t, b] for t in range(12) for b in range(4) if numbers[t, b] == k]
        assert len(hits) == 12 and acc[k] == sum(hits) / 12
    batch = task.sample(4, np.random.default_rng(seed))
    np.testing.assert_array_equal(task.metric(np.eye(3)[batch.targets], batch), 0.0)  # right everywhere
    np.testing.assert_array_equal(task.metric(logits, batch), error_rate(logits, batch))


def test_accuracy_by_instance_refuses_bad_arguments():
    task = OneShotTask(num_classes=3, presentations=2, size=4)
    ep = task.sample_episodes(2, np.random.default_rng(0))
    logits = np.zeros((6, 2, 3))
    with pytest.raises(ValueError, match=r"instances: expected ints in \[1, presentations = 2\], got \[5\]"):
        task.accuracy_by_instance(logits, ep, instances=(1, 5))
    with pytest.raises(ValueError, match="instances: expected an int >= 1"):
        task.accuracy_by_instance(logits, ep, instances=(0,))
    with pytest.raises(ValueError, match=r"logits: expected shape \(6, 2, 3\)"):
        task.accuracy_by_instance(np.zeros((6, 2, 4)), ep, instances=(1,))
    bad = logits.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="logits"):
        task.accuracy_by_instance(bad, ep, instances=(1,))
    with pytest.raises(TypeError, match="batch_or_episodes: expected"):
        task.accuracy_by_instance(logits, ep.labels, instances=(1,))
    with pytest.raises(TypeError, match="instances: expected a sequence"):
        task.accuracy_by_instance(logits, ep, instances=2)
    with pytest.raises(ValueError, match="logits: expected shape"):
        task.metric(np.zeros((6, 2, 2)), task.sample(2, np.random.default_rng(0)))


def test_one_shot_task_is_registered_and_scored_with_softmax():
    task = make_task("one_shot", num_classes=2, presentations=2, size=4)
    assert isinstance(task, OneShotTask) and task.level_range == (1, 1)
    assert task.loss == "softmax_ce" and task.metric_name == "label_errors" and 0 < task.metric_target < 1
    assert task.sample(1, np.random.default_rng(0), level=1).inputs.shape == (4, 1, 18)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(split="val"), ValueError, "split: expected one of 'train', 'test', 'all', got 'val'"),
        (dict(num_classes=11), ValueError, "num_classes: expected at most 10"),
        (dict(num_classes=0), ValueError, "num_classes: expected an integer >= 1"),
        (dict(size=2.0), TypeError, "size: expected an integer"),
        (dict(rotate=1), TypeError, "rotate: expected True or False"),
        (dict(data="/no/such/omniglot.zip"), ValueError, "data: '/no/such/omniglot.zip' does not exist"),
        (dict(data=3), TypeError, "data: expected None or a path"),
        (dict(test_data="."), ValueError, "test_data: expected None without data"),
    ],
)
def test_one_shot_task_refuses_bad_fields(kwargs, error, match):
    with pytest.raises(error, match=match):
        OneShotTask(**kwargs)


def test_one_shot_task_refuses_levels_and_too_many_classes_for_the_split():
    task = OneShotTask(num_classes=2, presentations=2, size=4)
    with pytest.raises(ValueError, match="level: expected None or 1"):
        task.sample(1, np.random.default_rng(0), level=2)
    with pytest.raises(ValueError, match="num_classes: expected at most 0"):
        _ = OneShotTask(num_classes=2, presentations=500, size=4, split="test").pool


def test_without_scikit_learn_the_digits_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import sklearn.datasets now fails
    with pytest.raises(ImportError, match=r"pip install 'refmann\[experiments\]'"):
        _ = OneShotTask(num_classes=2, presentations=2, size=4).pool


def _write_alphabets(root: Path, alphabets=("Alpha", "Beta"), characters=4, drawings=3, seed=0):
    """ALPHABET/characterNN/NNNN_DD.png glyphs of 6 x 6 pixels (ink = 0 in the file); the inks by name."""
    rng = np.random.default_rng(seed)
    truth = {}
    for alphabet in alphabets:
        for k in range(1, characters + 1):
            folder = root / alphabet / f"character{k:02d}"
            folder.mkdir(parents=True)
            for d in range(1, drawings + 1):
                ink = rng.random((6, 6)) < 0.4
                (folder / f"{k:04d}_{d:02d}.png").write_bytes(encode_png(~ink, 1, [d % 5] * 6))
                truth.setdefault(f"{alphabet}/character{k:02d}", []).append(ink)
    return truth


def _pool_names(task, names_in_order):
    return {names_in_order[c] for c in np.unique(task.pool[1])}


def test_one_shot_task_holds_out_every_fourth_character_of_a_generated_set(tmp_path):
    truth = _write_alphabets(tmp_path / "set")
    names = sorted(truth)  # the character ids follow the sorted names
    kwargs = dict(num_classes=2, presentations=3, size=6, data=str(tmp_path / "set"))
    train, test = OneShotTask(**kwargs), OneShotTask(**kwargs, split="test")
    assert _pool_names(test, names) == {names[3], names[7]}
    assert _pool_names(train, names) == set(names) - {names[3], names[7]}
    images = area_resize(np.stack(truth[names[3]]), 6)
    np.testing.assert_allclose(test.pool[0][test.pool[1] == 3], images)
    batch = train.sample(2, np.random.default_rng(0))
    assert batch.inputs.shape == (6, 2, 38) and np.all(np.isin(batch.targets, [0, 1]))
    assert len(np.unique(OneShotTask(**kwargs, split="all").pool[1])) == 8


def test_one_shot_task_tests_on_the_new_characters_of_test_data(tmp_path):
    _write_alphabets(tmp_path / "one", alphabets=("Alpha", "Beta"))
    _write_alphabets(tmp_path / "two", alphabets=("Beta", "Gamma"), seed=1)  # Beta is in both: dropped from test
    kwargs = dict(num_classes=2, presentations=3, size=6, data=str(tmp_path / "one"), test_data=str(tmp_path / "two"))
    train, test, both = (OneShotTask(**kwargs, split=s) for s in ("train", "test", "all"))
    assert len(np.unique(train.pool[1])) == 8 and len(np.unique(test.pool[1])) == 4
    assert set(np.unique(train.pool[1])).isdisjoint(np.unique(test.pool[1]))
    assert len(np.unique(both.pool[1])) == 12
    gamma = load_omniglot(tmp_path / "two")
    np.testing.assert_allclose(test.pool[0], area_resize(gamma.images[gamma.characters >= 4], 6))


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data/omniglot is absent (CI clones have no ../shared)")
def test_real_small1_and_small2_give_disjoint_train_and_test_characters():
    small1, small2 = str(DATA / "images_background_small1.zip"), str(DATA / "images_background_small2.zip")
    own = OneShotTask(data=small1, split="test")
    assert own.pool[0].shape == (34 * 20, 20, 20) and len(np.unique(own.pool[1])) == 34
    test = OneShotTask(data=small1, test_data=small2, split="test")
    assert len(np.unique(test.pool[1])) == 156 - 50  # small2 without Greek and Latin, which small1 has
    batch = test.sample(2, np.random.default_rng(0))
    assert batch.inputs.shape == (50, 2, 405) and 0.0 <= batch.inputs.min() and batch.inputs.max() <= 1.0
    assert 0.02 < batch.inputs[..., :400].mean() < 0.3  # ink is the minority of the resized drawings
