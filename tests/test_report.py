import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from popray.explain import run_explain
from popray.figures import CAPTIONS, run_figures
from popray.report import write_report


@pytest.fixture(scope="module")
def reported(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("reported") / "out"
    shutil.copytree(trained, out)
    run_explain(out, k=2, per_class=1)
    lines = []
    paths = run_figures(out, "efficientnet_lite0", 5.5, lines.append)
    return out, paths, lines, write_report(out)


def test_every_figure_is_drawn_from_the_tables(reported):
    _, paths, lines, _ = reported
    assert {p.stem for p in paths} == set(CAPTIONS)  # k = 2 and 3 confusion included
    for p in paths:
        with Image.open(p) as png:
            assert png.width > 300 and png.height > 200
    n = len(CAPTIONS)  # both protocols' confusion and reliability, and the windows' figure
    assert lines[0].startswith(f"[1/{n}] ") and len(lines) == n


def test_figures_of_stages_not_run_are_skipped(tiny_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_out, out)  # labelled, nothing embedded or trained
    lines = []
    paths = run_figures(out, "efficientnet_lite0", 5.5, lines.append)
    assert {p.stem for p in paths} == {"por_over_time", "por_by_post_kind", "followers"}
    assert sum("skipped: table" in line for line in lines) == 7


def _heatmaps(out) -> int:
    """Grad-CAM images in the report: one per class (per_class=1) and the highest- and
    lowest-scored three."""
    from popray.io import store

    rows = store.query(out, "SELECT picked FROM explanations WHERE path IS NOT NULL")
    picked = rows["picked"].to_pylist()
    assert sorted(set(picked)) == ["bottom", "class_sample", "top"]
    assert picked.count("class_sample") == 2 and picked.count("top") == picked.count("bottom") == 3
    return len(picked)


def test_report_answers_first(reported):
    text = reported[3].read_text()
    headings = re.findall(r"<h2[^>]*>([^<]+)</h2>", text)
    assert headings[:3] == [
        "How well popray ranks each profile&#x27;s posts",
        "What works, and what does not",
        "Popularity Rate over time",
    ]
    details = headings.index("Details")
    assert headings.index("Run summary") > details  # class balance and quarantine below
    answer = text[: text.index('id="details"')]
    verdict = re.search(r'<td class="(yes|no)"><b>(yes|no)</b>: ', answer)
    assert verdict and verdict.group(1) == verdict.group(2)
    assert "scored highest" in answer and "scored lowest" in answer
    assert "class balance" not in answer.lower()


def test_report_is_self_contained(reported):
    _, paths, _, page = reported
    text = page.read_text()
    sources = re.findall(r'<img src="([^"]{0,30})', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(sources) == len(paths) + _heatmaps(reported[0])  # each figure once
    assert not re.search(r"(href|src)=\"(https?:|//|/)", text)
    assert "Validation" in text and "[0.72]" not in text and ">0.72<" in text


def test_report_renders_in_a_real_browser(reported, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.skip("Debian's chromium and chromedriver are not installed (make test does it)")
    from selenium.webdriver.chrome.service import Service

    elsewhere = tmp_path / "copied"  # the report folder alone, away from OUT
    shutil.copytree(reported[3].parent, elsewhere)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    try:
        driver.get((elsewhere / "index.html").as_uri())
        images = driver.execute_script(
            "return [...document.images].map(i => [i.complete, i.naturalWidth]);"
        )
        tops = driver.execute_script(
            "const top = e => e.getBoundingClientRect().top;"
            "const verdict = [...document.querySelectorAll('th')]"
            ".find(e => e.textContent === 'better than guessing?');"
            "return {verdict: top(verdict), details: top(document.getElementById('details'))};"
        )
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        shot = Path(reported[0]) / "report" / "screenshot.png"
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    assert len(images) == len(reported[1]) + _heatmaps(reported[0])
    assert all(complete and width > 0 for complete, width in images)
    # the answer opens the page: the verdict column is on the first screen
    assert 0 < tops["verdict"] < 900 < tops["details"], tops
    assert errors == []
    assert Image.open(shot).size[0] >= 1000


def test_the_tsne_map_shows_a_bounded_sample_that_stays_stable(tmp_path):
    """t-SNE runs on at most `points` items, picked by a hash of the media id: the same
    items on every run, and an item in the sample of N stays in it when items are added."""
    from popray.config import LabelConfig
    from popray.labels import run_label
    from popray.plots.data import tsne_rows
    from popray.tools.bench_scale import BACKBONE, synthetic_out

    synthetic_out(tmp_path, profiles=3, posts=20)
    run_label(tmp_path, LabelConfig())
    every, total = tsne_rows(tmp_path, 2, BACKBONE, "por_rolling", points=10_000)
    assert len(every) == total > 40
    some, total_again = tsne_rows(tmp_path, 2, BACKBONE, "por_rolling", points=25)
    assert total_again == total and len(some) == 25
    ids = [r["media_id"] for r in some]
    assert set(ids) < {r["media_id"] for r in every} and ids == sorted(ids)
    assert [
        r["media_id"] for r in tsne_rows(tmp_path, 2, BACKBONE, "por_rolling", points=25)[0]
    ] == ids
    fewer = tsne_rows(tmp_path, 2, BACKBONE, "por_rolling", points=20)[0]
    assert {r["media_id"] for r in fewer} < set(ids)  # the same order, cut shorter
    other_seed = tsne_rows(tmp_path, 2, BACKBONE, "por_rolling", points=25, seed=1)[0]
    assert {r["media_id"] for r in other_seed} != set(ids)
