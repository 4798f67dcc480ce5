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


def test_report_is_self_contained(reported):
    _, paths, _, page = reported
    text = page.read_text()
    sources = re.findall(r'<img src="([^"]{0,30})', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(sources) == len(paths) + 2  # the figures + one Grad-CAM per class
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
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        shot = Path(reported[0]) / "report" / "screenshot.png"
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    assert len(images) == len(reported[1]) + 2
    assert all(complete and width > 0 for complete, width in images)
    assert errors == []
    assert Image.open(shot).size[0] >= 1000
