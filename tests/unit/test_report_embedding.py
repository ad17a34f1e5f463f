"""The report's explanations, suspect-label and drift sections: parsed as HTML, counted, and
bounded in size whatever the images."""

import base64
import io
from html.parser import HTMLParser

import numpy as np
import pytest

from contrastive.report import build_report
from contrastive.report.plots import thumbnail_uri

MISTAKES, NEIGHBOURS, SHOWN = 8, 5, 12
# The three sections with 8 x (1 + 5) + 12 thumbnails of 48 px noise (the worst case for
# PNG) and the drift figure: measured ~0.5 MB; a dataset's size never enters.
SECTIONS_BOUND = 800_000


class Sections(HTMLParser):
    """Each <section id=...>'s images (class, src) and text."""

    def __init__(self):
        super().__init__()
        self.sections, self.current = {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.current = attrs["id"]
            self.sections[self.current] = {"images": [], "text": []}
        elif tag == "img" and self.current:
            self.sections[self.current]["images"].append(attrs)

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None

    def handle_data(self, data):
        if self.current:
            self.sections[self.current]["text"].append(data)


def _noise(rng, size=96, channels=3):
    return rng.integers(0, 256, size=(size, size, channels), dtype=np.uint8)


def _neighbours(rng):
    names = ["tee", "trouser", "<b>pull</b>"]
    return {
        "method": "supcon",
        "class_names": names,
        "reference": {"examples": 50_000, "seen": 54_000, "dim": 128},
        "agreement": {"per_class": [0.9, 1.0, None], "support": [10, 12, 0], "overall": 0.95},
        "mistakes": [
            {
                "position": m,
                "label": 0,
                "predicted": 2,
                "confidence": 0.99 - m / 100,
                "thumbnail": thumbnail_uri(_noise(rng)),
                "neighbours": [
                    {
                        "id": f"train/{m}{j}",
                        "label": j % 3,
                        "similarity": 0.9,
                        "thumbnail": thumbnail_uri(_noise(rng)),
                    }
                    for j in range(NEIGHBOURS)
                ],
            }
            for m in range(MISTAKES)
        ],
        "suspects": {
            "count": 431,
            "checked": 54_000,
            "k": 10,
            "min_share": 0.8,
            "file": "suspect_labels.csv",
            "top": [
                {
                    "id": f"cats/<img src=x onerror=alert(1)>{n}.jpg",
                    "source_path": f"/photos/cats/{n}.jpg",
                    "label": 0,
                    "suggested": 1,
                    "share": 0.9,
                    "similarity": 0.8,
                    "thumbnail": thumbnail_uri(_noise(rng)),
                }
                for n in range(SHOWN)
            ],
        },
    }


def _drift(rng):
    return {
        "policy": "changed",
        "decision": "train",
        "reason": "drift found: MMD² 0.02, p = 0.002 < 0.05",
        "alpha": 0.05,
        "class_names": ["tee", "trouser", "pull"],
        "fingerprints": {"data": "d2", "code": "c1"},
        "champion": {"run_id": "run-1", "fingerprints": {"data": "d1", "code": "c1"}},
        "test": {
            "statistic": 0.02,
            "effect_size": 0.141,
            "p_value": 0.002,
            "bandwidth": 0.9,
            "permutations": 500,
            "sizes": [1000, 1000],
            "null": rng.normal(0, 0.001, 500).tolist(),
        },
        "drift_found": True,
        "label_shift": {
            "reference_shares": [0.3, 0.3, 0.4],
            "new_shares": [0.5, 0.5, 0.0],
            "total_variation": 0.4,
        },
        "map": {
            "x": rng.normal(size=600).tolist(),
            "y": rng.normal(size=600).tolist(),
            "side": ["champion"] * 300 + ["new"] * 300,
        },
    }


def _parse(path):
    page = path.read_text()
    parser = Sections()
    parser.feed(page)
    return page, parser.sections


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    rng = np.random.default_rng(0)
    summary = {"methods": {"supcon": {"test_accuracy": 0.9}}, "dataset": {"class_names": []}}
    path = tmp_path_factory.mktemp("report") / "report.html"
    build_report(summary, path, neighbours=_neighbours(rng), drift=_drift(rng))
    return _parse(path)


def test_the_three_sections_are_there_in_the_navigation(report):
    page, sections = report
    for key in ("explanations", "suspect-labels", "drift"):
        assert key in sections and f'href="#{key}"' in page


def test_explanations_show_each_mistake_with_its_neighbours(report):
    _, sections = report
    thumbs = [i for i in sections["explanations"]["images"] if i.get("class") == "thumb"]
    assert len(thumbs) == MISTAKES * (1 + NEIGHBOURS)
    text = "".join(sections["explanations"]["text"])
    assert "50,000 training images" in text and "uniform sample of 54,000" in text
    assert "<b>pull</b>" in text  # a class name is text, not markup
    assert "95.00" in text  # the overall nearest-neighbour agreement


def test_suspects_table_lists_the_shown_ones_escaped(report):
    page, sections = report
    thumbs = [i for i in sections["suspect-labels"]["images"] if i.get("class") == "thumb"]
    assert len(thumbs) == SHOWN
    text = "".join(sections["suspect-labels"]["text"])
    assert "431 of 54,000" in text and "suspect_labels.csv" in text
    assert "cats/<img src=x onerror=alert(1)>0.jpg" in text
    assert "onerror=alert(1)>" not in page.replace("&lt;img src=x onerror=alert(1)&gt;", "")


def test_drift_section_has_the_test_and_its_figure(report):
    _, sections = report
    text = " ".join(sections["drift"]["text"])
    assert "Drift found" in text and "0.002" in text and "500 permutations" in text
    assert "Same training data" in text and "no" in text
    figures = [i for i in sections["drift"]["images"] if i.get("alt") == "drift figures"]
    assert len(figures) == 1 and figures[0]["src"].startswith("data:image/png;base64,")


def test_sections_stay_small_and_offline(report):
    page, _ = report
    start = page.index('<section id="explanations">')
    end = page.index('<section id="parameters">')
    assert end - start < SECTIONS_BOUND, end - start
    assert "http://" not in page and "https://" not in page


def test_thumbnails_are_small_pngs_never_enlarged():
    from PIL import Image

    rng = np.random.default_rng(1)
    for image, expected in ((_noise(rng, 96), (48, 48)), (_noise(rng, 28, 1), (28, 28))):
        uri = thumbnail_uri(image)
        data = base64.b64decode(uri.split(",", 1)[1])
        with Image.open(io.BytesIO(data)) as picture:
            assert picture.format == "PNG" and picture.size == expected
            assert picture.mode == ("RGB" if image.shape[2] == 3 else "L")


def test_a_thumbnail_that_is_not_a_png_data_uri_is_not_embedded(tmp_path):
    rng = np.random.default_rng(2)
    neighbours = _neighbours(rng)
    neighbours["mistakes"][0]["thumbnail"] = 'javascript:alert(1)" onerror="x'
    build_report({"methods": {}, "dataset": {}}, tmp_path / "r.html", neighbours=neighbours)
    page, sections = _parse(tmp_path / "r.html")
    thumbs = [i for i in sections["explanations"]["images"] if i.get("class") == "thumb"]
    assert len(thumbs) == MISTAKES * (1 + NEIGHBOURS) - 1
    assert "javascript:" not in page


def test_without_results_each_section_says_so(tmp_path):
    build_report({"methods": {}, "dataset": {}}, tmp_path / "r.html")
    _, sections = _parse(tmp_path / "r.html")
    assert "No nearest-neighbour explanations" in "".join(sections["explanations"]["text"])
    assert "No training labels were checked" in "".join(sections["suspect-labels"]["text"])
    assert "No drift check ran" in "".join(sections["drift"]["text"])
