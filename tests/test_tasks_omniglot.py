"""refmann/tasks/omniglot.py: the PNG decoder, the folder/zip loaders, label-delayed episodes."""

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmann.tasks.omniglot import (
    area_resize,
    decode_png,
    digits_episodes,
    label_delayed_episodes,
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
