"""Tests of labelaudit.data: discovery, decoding, skipped files and the decode cache."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from labelaudit.data import loading as data
from labelaudit.data import DatasetError, ImageDecodeError, decode_image, load_dataset
from labelaudit.data.loading import LINKED_REASON

S = 8
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# ----------------------------------------------------------------------------- helpers


def solid(color, size=(S, S), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def write_bytes(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def jpeg_bytes(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def noise(size=(64, 64), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def write_csv(path: Path, rows, header=("path", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def load(root, **kwargs):
    kwargs.setdefault("image_size", S)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("workers", 2)
    return load_dataset(root, **kwargs)


def reasons(ds) -> dict[str, str]:
    return dict(zip(ds.skipped["path"], ds.skipped["reason"]))


def assert_color(arr: np.ndarray, color, tol=0):
    diff = np.abs(arr.astype(int) - np.array(color)).max()
    assert diff <= tol, f"expected {color}, got e.g. {arr.reshape(-1, 3)[0]} (max diff {diff})"


# ---------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    "name, kwargs, tol",
    [
        ("a.png", {}, 0),
        ("a.bmp", {}, 0),
        ("a.tif", {}, 0),
        ("a.webp", {"lossless": True}, 0),
        ("a.jpg", {"quality": 95}, 6),
    ],
)
def test_formats_roundtrip_colour(tmp_path, name, kwargs, tol):
    path = save(solid(RED), tmp_path / name, **kwargs)
    out = decode_image(path, S)
    assert out.shape == (S, S, 3) and out.dtype == np.uint8
    assert_color(out, RED, tol)


def test_rgba_full_alpha_and_transparent_pixel(tmp_path):
    arr = np.zeros((S, S, 4), dtype=np.uint8)
    arr[..., 0], arr[..., 3] = 255, 255          # opaque red
    arr[0, 0] = (0, 0, 255, 0)                   # fully transparent blue -> white
    arr[0, 1] = (255, 0, 0, 128)                 # half-transparent red over white
    out = decode_image(save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png"), S)
    assert_color(out[1:, :], RED)
    assert_color(out[0, 0], WHITE)
    assert_color(out[0, 1], (255, 127, 127), tol=1)


def test_la_alpha_composited_on_white(tmp_path):
    arr = np.zeros((S, S, 2), dtype=np.uint8)
    arr[..., 0], arr[..., 1] = 50, 255
    arr[0, 0, 1] = 0
    out = decode_image(save(Image.fromarray(arr, "LA"), tmp_path / "a.png"), S)
    assert_color(out[1:], (50, 50, 50))
    assert_color(out[0, 0], WHITE)


def test_sixteen_bit_png_scaled_not_clipped(tmp_path):
    arr = np.zeros((S, S), dtype=np.uint16)
    arr[:, : S // 2] = 65535
    arr[:, S // 2:] = 32768
    img = Image.fromarray(arr)
    path = save(img, tmp_path / "deep.png")
    with Image.open(path) as opened:
        assert opened.mode in ("I;16", "I")
    out = decode_image(path, S)
    assert_color(out[:, : S // 2], WHITE)
    assert_color(out[:, S // 2:], (128, 128, 128), tol=1)


def test_sixteen_bit_mode_i_image(tmp_path):
    arr = np.full((S, S), 32768, dtype=np.int32)
    out = decode_image(save(Image.fromarray(arr, "I"), tmp_path / "i.tif"), S)
    assert_color(out, (128, 128, 128), tol=1)


def test_eight_bit_data_in_a_32_bit_image_is_not_darkened(tmp_path):
    """A mode-``I`` TIFF of 8-bit values (``img.convert("I")``) was scaled as 16-bit data: 251 became 1,
    an almost black image scored without a word. Values within 0..255 in mode ``I`` are now 8-bit,
    except in a PNG (no 32-bit samples there); 16-bit modes keep their scale (a dark 16-bit PNG stays dark)."""
    grey = Image.fromarray(np.full((S, S), 200, dtype=np.uint8), "L")
    assert_color(decode_image(save(grey.convert("I"), tmp_path / "i8.tif"), S), (200, 200, 200), tol=1)
    dark16 = np.full((S, S), 200, dtype=np.uint16)
    assert_color(decode_image(save(Image.fromarray(dark16), tmp_path / "dark.png"), S), (1, 1, 1), tol=1)
    # Pillow before 10.4 opens a 16-bit greyscale PNG as mode I: a PNG's mode-I data stays 16-bit
    as_mode_i = Image.fromarray(dark16.astype(np.int32), "I")  # how such a Pillow hands the PNG over
    assert_color(np.asarray(data._to_rgb(as_mode_i, "PNG")), (1, 1, 1), tol=1)
    assert_color(np.asarray(data._to_rgb(as_mode_i, "TIFF")), (200, 200, 200), tol=1)
    assert_color(np.asarray(data._to_rgb(as_mode_i, "PPM")), (1, 1, 1), tol=1)  # a 16-bit PGM reads as I too


def test_palette_png_with_transparency(tmp_path):
    img = Image.new("P", (S, S), 1)
    img.putpalette([0, 0, 255] + [0, 255, 0] + [0, 0, 0] * 254)
    img.putpixel((0, 0), 0)
    out = decode_image(save(img, tmp_path / "p.png", transparency=0), S)
    assert_color(out[0, 0], WHITE)
    assert_color(out[1:], GREEN)
    plain = Image.new("P", (S, S), 1)
    plain.putpalette([0, 0, 255] + [255, 0, 0] + [0, 0, 0] * 254)
    assert_color(decode_image(save(plain, tmp_path / "q.png"), S), RED)


@pytest.mark.parametrize("mode, value, expected", [("L", 100, (100,) * 3), ("1", 1, WHITE), ("1", 0, (0, 0, 0))])
def test_grayscale_to_rgb(tmp_path, mode, value, expected):
    out = decode_image(save(solid(value, mode=mode), tmp_path / f"g{value}.png"), S)
    assert_color(out, expected)


def test_cmyk_to_rgb(tmp_path):
    out = decode_image(save(solid((0, 255, 255, 0), mode="CMYK"), tmp_path / "c.tif"), S)
    assert_color(out, RED)
    jpg = decode_image(write_bytes(tmp_path / "c.jpg", jpeg_bytes(solid((0, 255, 255, 0), mode="CMYK"))), S)
    assert_color(jpg, RED, tol=8)


def test_gif_gives_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    solid(RED).save(path, save_all=True, append_images=[solid(BLUE)], duration=100, loop=0)
    with Image.open(path) as img:
        assert getattr(img, "n_frames", 1) == 2
    assert_color(decode_image(path, S), RED)


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((16, 32, 3), dtype=np.uint8)   # wide: left red, right blue
    arr[:, :16] = RED
    arr[:, 16:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6                              # display rotated 90 degrees clockwise
    path = save(Image.fromarray(arr), tmp_path / "rot.jpg", exif=exif, quality=95)
    out = decode_image(path, S)
    assert_color(out[0], RED, tol=30)             # top row: red
    assert_color(out[-1], BLUE, tol=30)           # bottom row: blue


def test_resize_squashes_without_cropping(tmp_path):
    arr = np.zeros((10, 40, 3), dtype=np.uint8)
    arr[:, :20] = RED
    arr[:, 20:] = BLUE
    out = decode_image(save(Image.fromarray(arr), tmp_path / "wide.png"), S)
    assert out.shape == (S, S, 3)
    assert_color(out[:, 0], RED, tol=2)
    assert_color(out[:, -1], BLUE, tol=2)


def test_big_jpeg_uses_draft_and_keeps_colour(tmp_path):
    path = write_bytes(tmp_path / "big.jpg", jpeg_bytes(solid(GREEN, size=(800, 600)), quality=90))
    assert_color(decode_image(path, S), GREEN, tol=8)


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"", "empty file"),
        (b"hello, this is text\n", "not an image"),
        (b"<!DOCTYPE html><html><body>404</body></html>", "not an image"),
    ],
)
def test_decode_errors(tmp_path, payload, expected):
    path = write_bytes(tmp_path / "bad.jpg", payload)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(path, S)
    assert expected in info.value.reason


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_detected(tmp_path, fmt):
    buf = io.BytesIO()
    noise().save(buf, format=fmt)
    path = write_bytes(tmp_path / f"trunc.{fmt.lower()}", buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="corrupt image"):
        decode_image(path, S)


def test_decompression_bomb_limit(tmp_path, monkeypatch):
    path = save(solid(RED, size=(20, 20)), tmp_path / "bomb.png")
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(path, S)


def test_a_large_jpeg_photo_is_decoded_at_a_reduced_scale_not_refused(tmp_path, monkeypatch):
    """A 108-megapixel phone photo was skipped as a possible decompression bomb, though a JPEG decodes at 1/8
    scale; the limit now counts the pixels decoded. (Scaled down: a 160x160 JPEG under a 400-pixel limit.) A
    progressive JPEG holds full-size coefficients while decoding: it still counts at full size."""
    jpeg = save(solid(RED, size=(160, 160)), tmp_path / "photo.jpg")
    png = save(solid(RED, size=(160, 160)), tmp_path / "photo.png")  # no reduced decoding: still refused
    progressive = save(solid(RED, size=(160, 160)), tmp_path / "progressive.jpg", progressive=True)
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 20 * 20)
    assert_color(decode_image(jpeg, S), RED, tol=8)
    for refused in (png, progressive):
        with pytest.raises(ImageDecodeError, match=r"too large to decode \(160x160 px"):
            decode_image(refused, S)


def test_permission_error_reason(tmp_path, monkeypatch):
    path = save(solid(RED), tmp_path / "locked.png")

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(data, "open", deny, raising=False)
    with pytest.raises(ImageDecodeError, match="permission denied"):
        decode_image(path, S)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file_skipped(tmp_path):
    save(solid(RED), tmp_path / "cat" / "ok.png")
    locked = save(solid(RED), tmp_path / "cat" / "locked.png")
    locked.chmod(0)
    try:
        ds = load(tmp_path)
    finally:
        locked.chmod(0o644)
    assert ds.paths == ["cat/ok.png"]
    assert "permission" in reasons(ds)["cat/locked.png"]


# --------------------------------------------------------------------- class folders


def make_folder_dataset(root: Path) -> None:
    save(solid(RED), root / "red" / "r1.png")
    save(solid(RED), root / "red" / "nested" / "deeper" / "r2.jpg", quality=95)
    save(solid(BLUE), root / "blue" / "b1.bmp")
    save(solid(BLUE), root / "blue" / "b2.webp", lossless=True)


def test_class_folders_layout(tmp_path):
    make_folder_dataset(tmp_path)
    ds = load(tmp_path)
    assert ds.root == tmp_path.resolve() and ds.root.is_absolute()
    assert ds.paths == ["blue/b1.bmp", "blue/b2.webp", "red/nested/deeper/r2.jpg", "red/r1.png"]
    assert ds.label_names == ["blue", "blue", "red", "red"]
    assert ds.images.shape == (4, S, S, 3) and ds.images.dtype == np.uint8
    assert_color(ds.images[0], BLUE)
    assert_color(ds.images[2], RED, tol=6)
    assert list(ds.skipped.columns) == ["path", "reason"] and ds.skipped.empty
    assert not ds.cache_hit and len(ds) == 4


def test_bad_files_skipped_others_load(tmp_path):
    make_folder_dataset(tmp_path)
    write_bytes(tmp_path / "red" / "empty.jpg", b"")
    write_bytes(tmp_path / "red" / "notes.txt", b"some notes")
    write_bytes(tmp_path / "red" / "page.jpg", b"<html><body>not found</body></html>")
    full = jpeg_bytes(noise())
    write_bytes(tmp_path / "blue" / "trunc.jpg", full[: len(full) // 2])
    png = io.BytesIO()
    noise().save(png, format="PNG")
    write_bytes(tmp_path / "blue" / "garbled.png", png.getvalue()[:60] + b"\x00" * 500)
    save(solid(RED), tmp_path / "loose.png")                  # directly in root
    ds = load(tmp_path)
    assert ds.paths == ["blue/b1.bmp", "blue/b2.webp", "red/nested/deeper/r2.jpg", "red/r1.png"]
    why = reasons(ds)
    assert why["red/empty.jpg"] == "empty file"
    assert why["red/notes.txt"].startswith("not an image")
    assert why["red/page.jpg"].startswith("not an image")
    assert why["blue/trunc.jpg"].startswith("corrupt image")
    assert why["blue/garbled.png"].startswith("corrupt image")
    assert why["loose.png"] == "not inside a class folder"
    assert list(ds.skipped["path"]) == sorted(ds.skipped["path"])
    unreadable = ds.unreadable.set_index("path")  # labelled files that did not decode
    assert list(unreadable.index) == ["blue/garbled.png", "blue/trunc.jpg", "red/empty.jpg", "red/notes.txt",
                                      "red/page.jpg"]
    assert unreadable.loc["red/empty.jpg", "given_label"] == "red"
    assert unreadable.loc["red/empty.jpg", "reason"] == "empty file"


def test_hidden_entries_are_not_scanned_and_hidden_images_are_reported(tmp_path):
    """Hidden images and folders in class folders get a skipped row; tool metadata passes unreported."""
    make_folder_dataset(tmp_path)
    write_bytes(tmp_path / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    write_bytes(tmp_path / "red" / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    write_bytes(tmp_path / "red" / "._r1.png", b"\x00\x05\x16\x07")  # AppleDouble companion: not an image
    save(solid(RED), tmp_path / "red" / ".hidden.png")
    save(solid(RED), tmp_path / "blue" / "deep" / ".Shot.JPG")
    save(solid(RED), tmp_path / ".thumbnails" / "t.png")
    save(solid(RED), tmp_path / ".hidden-top.png")
    save(solid(RED), tmp_path / "red" / ".cache" / "c.png")
    ds = load(tmp_path)
    assert len(ds.paths) == 4
    assert reasons(ds) == {path: data.HIDDEN_REASON for path in ("blue/deep/.Shot.JPG", "red/.cache/", "red/.hidden.png")}
    assert ds.unreadable.empty  # not scored, but not labelled images the export must keep either


def test_a_hidden_scan_directory_in_a_class_folder_is_not_reported_as_hidden(tmp_path):
    """--out DATA/red/.labelaudit: the scan's own folder is excluded, not listed as a hidden folder."""
    make_folder_dataset(tmp_path)
    own = tmp_path / "red" / ".labelaudit"
    write_bytes(own / "scores.csv", b"path\n")
    save(solid(RED), tmp_path / "red" / ".other" / "x.png")
    ds = load(tmp_path, exclude=[own / "scores.csv"])
    assert reasons(ds) == {"red/.other/": data.HIDDEN_REASON}
    assert len(ds.paths) == 4


def test_a_folder_filter_skips_folders_with_its_reason_and_sees_full_paths(tmp_path):
    """``skip_folder`` is asked of every sub-folder (class folders and deeper ones) with its full path."""
    make_folder_dataset(tmp_path)
    save(solid(RED), tmp_path / "red" / "old" / "x.png")
    save(solid(RED), tmp_path / "archive" / "y.png")
    asked = []

    def skip(folder: str):
        asked.append(folder)
        return "kept elsewhere" if os.path.basename(folder) in {"old", "archive"} else None

    ds = load(tmp_path, skip_folder=skip)
    assert reasons(ds) == {"archive/": "kept elsewhere", "red/old/": "kept elsewhere"}
    assert len(ds.paths) == 4 and "archive" not in ds.label_names and ds.empty_classes == []
    assert os.path.join(str(tmp_path.resolve()), "red", "nested") in asked
    assert all(os.path.isabs(folder) for folder in asked)
    assert len(load(tmp_path).paths) == 6  # without a filter every folder is scanned


ODD_NAMES = [
    "with space.png", "café é.png", "中文.png", "a,b.png", 'quote"d.png', "it's.png",
    "#hash.png", "-leading-dash.png", "UPPER.JPG", "mixed.Png", "semi;colon.png",
]


def test_odd_file_names_class_folders(tmp_path):
    for name in ODD_NAMES:
        save(solid(GREEN), tmp_path / "clé 类" / name, **({"format": "JPEG"} if name.endswith("JPG") else {}))
    ds = load(tmp_path)
    assert ds.paths == sorted(f"clé 类/{n}" for n in ODD_NAMES)
    assert set(ds.label_names) == {"clé 类"}
    assert ds.skipped.empty


def test_missing_root_and_empty_dataset(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no image files found"):
        load(tmp_path)
    write_bytes(tmp_path / "cat" / "a.jpg", b"nope")
    with pytest.raises(DatasetError, match="could be decoded"):
        load(tmp_path)
    assert issubclass(DatasetError, ValueError)


def test_symlink_outside_root_skipped(tmp_path):
    root = tmp_path / "ds"
    make_folder_dataset(root)
    outside = save(solid(RED), tmp_path / "outside.png")
    (root / "red" / "link.png").symlink_to(outside)
    (root / "red" / "inner.png").symlink_to(root / "red" / "r1.png")
    (root / "red" / "broken.png").symlink_to(tmp_path / "missing.png")
    why = reasons(ds := load(root))
    assert "outside the dataset root" in why["red/link.png"]
    assert "red/inner.png" in ds.paths
    assert "red/broken.png" in why


def test_a_linked_folder_is_counted_file_by_file_not_as_one_row(tmp_path):
    """A class folder that is a symbolic link (a dataset put together with `ln -s`) is not followed, and
    was one skipped row: a whole class gone, reported as "1 other". Each file under it is a row now, and
    ``linked_folders`` names the link with its count (a link to an empty folder gets one row of its own)."""
    root = tmp_path / "ds"
    make_folder_dataset(root)
    elsewhere = tmp_path / "elsewhere" / "green"
    for i in range(3):
        save(solid(BLUE), elsewhere / ("deep" if i else "") / f"g{i}.png")
    (elsewhere / ".DS_Store").write_bytes(b"x")
    (root / "green").symlink_to(elsewhere, target_is_directory=True)
    (root / "red" / "more").symlink_to(elsewhere, target_is_directory=True)
    (tmp_path / "empty").mkdir()
    (root / "hollow").symlink_to(tmp_path / "empty", target_is_directory=True)
    ds = load(root)
    why = reasons(ds)
    assert ds.linked_folders == {"green/": 3, "hollow/": 0, "red/more/": 3}
    assert {p for p, r in why.items() if r == LINKED_REASON} == {
        "green/g0.png", "green/deep/g1.png", "green/deep/g2.png",
        "red/more/g0.png", "red/more/deep/g1.png", "red/more/deep/g2.png"}
    assert "no file under it" in why["hollow/"]
    assert set(ds.label_names) == {"red", "blue"} and len(ds) == 4
    # a link into the dataset (its files are scanned where they are) or to a folder holding it (the
    # dataset itself, a scan folder inside it) is one row, not a walk of the dataset into skipped.csv
    (root / "red" / "again").symlink_to(root / "blue", target_is_directory=True)
    (root / "red" / "up").symlink_to(tmp_path, target_is_directory=True)
    why = reasons(ds := load(root))
    assert "leads into the dataset folder" in why["red/again/"] and "leads into" in why["red/up/"]
    assert not any(p.startswith(("red/again/", "red/up/")) and p.endswith(".png") for p in why)
    assert "red/again/" not in ds.linked_folders and len(ds) == 4


def test_workers_and_progress_give_same_result(tmp_path, capsys):
    make_folder_dataset(tmp_path)
    one = load(tmp_path, workers=1)
    many = load(tmp_path, workers=0, progress=True)
    assert one.paths == many.paths
    np.testing.assert_array_equal(one.images, many.images)
    assert "decoding" in capsys.readouterr().err


# -------------------------------------------------------------------------- labels CSV


def test_csv_layout(tmp_path):
    root = tmp_path / "ds"
    for name in ["b.png", "a.png", "sub/c.png", "dup.png", "x y.png"]:
        save(solid(RED), root / name)
    save(solid(RED), tmp_path / "outside.png")
    (root / "escape.png").symlink_to(tmp_path / "outside.png")
    labels = write_csv(tmp_path / "labels.csv", [
        ("b.png", "NA"),
        ("a.png", "001"),
        ("sub\\c.png", "cat"),              # Windows separators
        (str(root / "x y.png"), "1"),      # absolute, inside root
        ("dup.png", "dog"),
        ("dup.png", "cat"),                 # duplicate: second row skipped
        ("missing.png", "cat"),
        ("../outside.png", "cat"),
        (str(tmp_path / "outside.png"), "cat"),
        ("escape.png", "cat"),
        ("sub/c.png", ""),                  # empty label
    ])
    ds = load(root, labels_csv=labels)
    assert ds.paths == ["a.png", "b.png", "dup.png", "sub/c.png", "x y.png"]
    assert ds.label_names == ["001", "NA", "dog", "cat", "1"]
    assert all(isinstance(x, str) for x in ds.label_names)
    rows = list(zip(ds.skipped["path"], ds.skipped["reason"]))
    why = dict(rows)
    assert "duplicate" in why["dup.png"]
    assert "not found" in why["missing.png"]
    assert "escapes the dataset root" in why["../outside.png"]
    assert "outside the dataset root" in why[str(tmp_path / "outside.png")]
    assert "outside the dataset root" in why["escape.png"]
    # a second row of a listed path with an empty label is a duplicate, not an "empty label" of c.png
    assert ("sub/c.png", "duplicate path with an empty label (labelled 'cat' on CSV line 4)") in rows


def test_csv_odd_names_bom_and_column_case(tmp_path):
    root = tmp_path / "ds"
    for name in ODD_NAMES:
        save(solid(BLUE), root / "imgs" / name, **({"format": "JPEG"} if name.endswith("JPG") else {}))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([" Path", "Label "])
    writer.writerows((f"imgs/{n}", "blue") for n in ODD_NAMES)
    (tmp_path / "labels.csv").write_bytes(buf.getvalue().encode("utf-8-sig"))
    ds = load(root, labels_csv=tmp_path / "labels.csv")
    assert ds.paths == sorted(f"imgs/{n}" for n in ODD_NAMES)
    assert ds.skipped.empty


def test_csv_missing_columns(tmp_path):
    save(solid(RED), tmp_path / "a.png")
    bad = write_csv(tmp_path / "bad.csv", [("a.png", "cat")], header=("file", "class"))
    with pytest.raises(DatasetError, match="'path' and 'label'.*'file', 'class'"):
        load(tmp_path, labels_csv=bad)
    with pytest.raises(DatasetError, match="not found"):
        load(tmp_path, labels_csv=tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DatasetError):
        load(tmp_path, labels_csv=tmp_path / "empty.csv")


def test_csv_parse_error_is_one_line(tmp_path):
    """pandas ends its tokenizer message in a newline: the error ended in a stray blank line."""
    save(solid(RED), tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("path,label\na.png,cat\nb.png,dog,extra\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="cannot be parsed") as err:
        load(tmp_path, labels_csv=tmp_path / "l.csv")
    message = str(err.value)
    assert "\n" not in message and message == message.strip() and "line 3" in message, repr(message)


def test_missing_files_are_counted(tmp_path):
    """CSV rows naming no file and broken links: the export reports them (ScanSummary.n_missing_files)."""
    save(solid(RED), tmp_path / "a.png")
    save(solid(RED), tmp_path / "bad.png").write_bytes(b"not an image")
    labels = write_csv(tmp_path / "l.csv", [("a.png", "cat"), ("bad.png", "cat"), ("gone.png", "dog")])
    assert load(tmp_path, labels_csv=labels).n_missing_files == 1  # the undecodable file is not missing
    save(solid(RED), tmp_path / "folders" / "cat" / "a.png")
    (tmp_path / "folders" / "cat" / "link.png").symlink_to(tmp_path / "folders" / "cat" / "gone.png")
    assert load(tmp_path / "folders").n_missing_files == 1


def test_csv_no_usable_rows(tmp_path):
    save(solid(RED), tmp_path / "a.png")
    labels = write_csv(tmp_path / "l.csv", [("missing.png", "cat")])
    with pytest.raises(DatasetError, match="no usable rows"):
        load(tmp_path, labels_csv=labels)


# ------------------------------------------------------------------------------- cache


def test_cache_hit_does_not_decode(tmp_path, monkeypatch):
    root, cache = tmp_path / "ds", tmp_path / "cache"
    make_folder_dataset(root)
    write_bytes(root / "red" / "broken.jpg", b"garbage")
    first = load(root, cache_dir=cache)
    assert not first.cache_hit
    assert len(list(cache.glob("decoded-*.npy"))) == 1 and len(list(cache.glob("decoded-*.json"))) == 1
    assert not list(cache.glob(".*tmp"))

    def boom(*args, **kwargs):
        raise AssertionError("decode_image called on a cache hit")

    monkeypatch.setattr(data, "decode_image", boom)
    second = load(root, cache_dir=cache)
    assert second.cache_hit
    assert second.paths == first.paths and second.label_names == first.label_names
    np.testing.assert_array_equal(second.images, first.images)
    pd.testing.assert_frame_equal(second.skipped, first.skipped)
    assert "red/broken.jpg" in set(second.skipped["path"])


def test_cache_invalidated_by_changed_or_added_file(tmp_path):
    root, cache = tmp_path / "ds", tmp_path / "cache"
    make_folder_dataset(root)
    load(root, cache_dir=cache)
    target = save(solid(GREEN), root / "red" / "r1.png")
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
    changed = load(root, cache_dir=cache)
    assert not changed.cache_hit
    assert_color(changed.images[changed.paths.index("red/r1.png")], GREEN)
    assert load(root, cache_dir=cache).cache_hit
    save(solid(RED), root / "red" / "new.png")
    added = load(root, cache_dir=cache)
    assert not added.cache_hit and "red/new.png" in added.paths
    assert not load(root, cache_dir=cache, image_size=S * 2).cache_hit


def test_cache_survives_label_changes_and_corrupt_cache(tmp_path):
    root, cache = tmp_path / "ds", tmp_path / "cache"
    for name in ["a.png", "b.png"]:
        save(solid(RED), root / name)
    labels = write_csv(tmp_path / "l.csv", [("a.png", "cat"), ("b.png", "dog")])
    assert not load(root, labels_csv=labels, cache_dir=cache).cache_hit
    write_csv(labels, [("a.png", "dog"), ("b.png", "dog")])
    relabelled = load(root, labels_csv=labels, cache_dir=cache)
    assert relabelled.cache_hit and relabelled.label_names == ["dog", "dog"]
    for npy in cache.glob("decoded-*.npy"):
        npy.write_bytes(b"not an array")
    again = load(root, labels_csv=labels, cache_dir=cache)
    assert not again.cache_hit and again.images.shape == (2, S, S, 3)


def test_cache_key_depends_on_files_not_order():
    a = data.cache_key([("x.png", 1, 2), ("y.png", 3, 4)], 32)
    assert a == data.cache_key([("y.png", 3, 4), ("x.png", 1, 2)], 32)
    assert a != data.cache_key([("x.png", 1, 2), ("y.png", 3, 5)], 32)
    assert a != data.cache_key([("x.png", 1, 2), ("y.png", 3, 4)], 16)


def test_cache_dir_inside_root_not_scanned(tmp_path):
    make_folder_dataset(tmp_path)
    load(tmp_path, cache_dir=tmp_path / "cache")
    ds = load(tmp_path, cache_dir=tmp_path / "cache")
    assert ds.cache_hit and all(not p.startswith("cache/") for p in ds.paths)
    assert ds.skipped.empty


# ------------------------------------------------------------ reported, not silently dropped


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` RGB pixels (no real image data)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_skipped_without_pillow_warning(tmp_path):
    import warnings

    make_folder_dataset(tmp_path)
    write_bytes(tmp_path / "red" / "huge.png", _png_header_only(10_000, 9_000))  # > Pillow's warning limit
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load(tmp_path)
        with pytest.raises(ImageDecodeError, match="too large"):
            decode_image(tmp_path / "red" / "huge.png", S)
    assert reasons(ds)["red/huge.png"].startswith("image too large")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_images_too_large_to_decode_are_told_apart_from_undecodable_files(tmp_path):
    """:class:`ImageTooLarge` files go to ``too_large`` (images: an export keeps them), not ``unreadable``;
    both are ``skipped`` rows. The decode cache keeps the difference (its entries from before are
    another decoder version, so they are not read)."""
    from labelaudit.data.loading import ImageTooLarge

    make_folder_dataset(tmp_path / "ds")
    write_bytes(tmp_path / "ds" / "red" / "huge.png", _png_header_only(10_000, 9_000))
    write_bytes(tmp_path / "ds" / "blue" / "junk.png", b"not an image")
    with pytest.raises(ImageTooLarge):
        decode_image(tmp_path / "ds" / "red" / "huge.png", S)
    cache = tmp_path / "cache"
    for expect_hit in (False, True):
        ds = load(tmp_path / "ds", cache_dir=cache)
        assert ds.cache_hit is expect_hit
        assert ds.too_large.path.tolist() == ["red/huge.png"] and ds.too_large.given_label.tolist() == ["red"]
        assert ds.unreadable.path.tolist() == ["blue/junk.png"]
        assert {"red/huge.png", "blue/junk.png"} <= set(ds.skipped.path)


def test_empty_class_folders_are_reported(tmp_path):
    make_folder_dataset(tmp_path)
    (tmp_path / "green").mkdir()
    (tmp_path / "yellow" / "sub").mkdir(parents=True)
    write_bytes(tmp_path / "yellow" / "sub" / ".hidden", b"x")
    ds = load(tmp_path)
    assert ds.empty_classes == ["green", "yellow"]
    assert ds.paths == ["blue/b1.bmp", "blue/b2.webp", "red/nested/deeper/r2.jpg", "red/r1.png"]


def test_csv_nul_in_path_is_escaped_in_the_report(tmp_path):
    save(solid(RED), tmp_path / "a.png")
    save(solid(RED), tmp_path / "b.png")
    labels = write_csv(tmp_path / "l.csv", [("a.png", "x"), ("b.png", "y"), ("evil\x00.png", "x")])
    ds = load(tmp_path, labels_csv=labels)
    assert ds.paths == ["a.png", "b.png"]
    assert reasons(ds) == {"evil\\x00.png": "invalid path (contains a NUL character)"}
    assert not any("\x00" in p for p in ds.skipped["path"])


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_csv_utf16_with_bom_is_read(tmp_path, encoding):
    save(solid(RED), tmp_path / "é.png")
    save(solid(BLUE), tmp_path / "b.png")
    text = "path,label\r\né.png,rouge\r\nb.png,bleu\r\n"
    bom = {"utf-16": b"", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}[encoding]
    (tmp_path / "l.csv").write_bytes(bom + text.encode(encoding))
    ds = load(tmp_path, labels_csv=tmp_path / "l.csv")
    assert ds.paths == ["b.png", "é.png"] and ds.label_names == ["bleu", "rouge"]


def test_csv_utf16_without_bom_says_so(tmp_path):
    save(solid(RED), tmp_path / "a.png")
    (tmp_path / "l.csv").write_bytes("path,label\na.png,x\n".encode("utf-16-le"))
    with pytest.raises(DatasetError, match="UTF-16"):
        load(tmp_path, labels_csv=tmp_path / "l.csv")


def test_csv_duplicates_name_the_conflicting_label(tmp_path):
    for name in ["a.png", "b.png", "c.png", "d.png"]:
        save(solid(RED), tmp_path / name)
    labels = write_csv(tmp_path / "l.csv", [
        ("a.png", "dog"), ("a.png", "cat"),   # conflicting label: both named
        ("b.png", "dog"), ("b.png", "dog"),   # plain duplicate
        ("c.png", ""), ("c.png", "cat"),      # empty label first: the labelled row is used
        ("d.png", ""),                        # only an empty label
    ])
    ds = load(tmp_path, labels_csv=labels)
    assert ds.paths == ["a.png", "b.png", "c.png"] and ds.label_names == ["dog", "dog", "cat"]
    rows = list(zip(ds.skipped["path"], ds.skipped["reason"]))
    assert rows == [
        ("a.png", "duplicate path with a different label: this row says 'cat', CSV line 2 (used) says 'dog'"),
        ("b.png", "duplicate path (first listed on CSV line 4)"),
        ("c.png", "duplicate path with an empty label (labelled 'cat' on CSV line 7)"),
        ("d.png", "empty label"),
    ]
