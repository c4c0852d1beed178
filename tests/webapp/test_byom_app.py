"""A scan from embeddings of files that are not images: the review app shows text cards, export works."""

import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from webapp_support import make_client

import labelaudit
from labelaudit.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the generated-embeddings helper
from byom_data import make_byom_data  # noqa: E402


@pytest.fixture(scope="module")
def text_scan(tmp_path_factory):
    data = make_byom_data(tmp_path_factory.mktemp("byom-app") / "data", n_per_class=15)
    out = data.root.parent / "scan"
    labelaudit.scan(data.root, out=out, features=data.features, index=data.index, folds=3, progress=False)
    return data, out


def test_pages_and_text_cards_for_files_that_are_not_images(text_scan):
    data, out = text_scan
    client = make_client(out)
    for page in ("/", "/queue", "/grid", "/samples/1", "/map"):
        assert client.get(page).status_code == 200, page
    for kind in ("thumbnail", "image"):
        response = client.get(f"/api/samples/1/{kind}")
        assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
        assert b".txt</text>" in response.content and b"sample " in response.content  # its name and first line
    assert client.get("/api/samples/1").json()["path"].endswith(".txt")


def test_only_formats_pillow_opens_count_as_images():
    from labelaudit.webapp.routers.images import is_image_file

    assert is_image_file(Path("a/b.JPG")) and is_image_file(Path("c.webp")) and is_image_file(Path("d.tiff"))
    for name in ("report.pdf", "scan.PDF", "notes.txt", "no_suffix"):  # .pdf: Pillow writes it, cannot open it
        assert not is_image_file(Path(name)), name


def test_text_card_escapes_the_file_content(tmp_path):
    from labelaudit.webapp.routers.images import text_card

    (tmp_path / "a&b.txt").write_text("<script>alert(1)</script>\n")
    card = text_card(tmp_path / "a&b.txt").decode()
    assert "<script>" not in card and "&lt;script&gt;" in card and "a&amp;b.txt" in card


def test_export_of_a_scan_from_embeddings(text_scan, tmp_path):
    data, out = text_scan
    result = CliRunner().invoke(main, ["export", str(out), "-o", str(tmp_path / "clean.csv")])
    assert result.exit_code == 0, result.output
    cleaned = pd.read_csv(tmp_path / "clean.csv")
    assert sorted(cleaned.path) == sorted(data.paths)
