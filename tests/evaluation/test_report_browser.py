"""The report as a reader sees it: rendered by headless Chromium (Debian's chromium and
chromium-driver, through selenium) at a laptop's width, no table or figure runs past the page
and every figure has alt text that says what it shows. Skipped without a browser."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .test_report_evidence import labels_and_signal, probabilities, report, write_model

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (dev extra)"
)

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    BROWSER is None or DRIVER is None,
    reason="no headless browser: install Debian's chromium and chromium-driver "
    "(apt-get install chromium chromium-driver; .ci/run does)",
)
WIDTH = 1024  # CSS pixels: a small laptop window

# Every table and figure, opened as a reader would, with how far it reaches past its box.
LAYOUT = """
for (const d of document.querySelectorAll('details')) d.open = true;
const page = document.documentElement.clientWidth;
return {
  page: page,
  scroll: document.documentElement.scrollWidth,
  over: [...document.querySelectorAll('table, img, .wide, figure')]
    .filter(e => e.getBoundingClientRect().right > page + 0.5 || e.scrollWidth > e.clientWidth + 1)
    .map(e => e.tagName + ' ' + (e.querySelector('caption, summary')?.textContent ?? e.alt ?? '').slice(0, 60)),
  alts: [...document.querySelectorAll('img')].map(i => i.alt),
  broken: [...document.querySelectorAll('img')].filter(i => !i.complete || i.naturalWidth === 0).length,
};
"""


def test_no_table_or_figure_is_wider_than_the_page(tmp_path: Path) -> None:
    y, groups, rng = labels_and_signal()
    paths = {
        name: write_model(tmp_path / name, y, groups, probabilities(y, rng, strength))
        for name, strength in (("synergy-with-a-long-run-name", 2.0), ("concat", 1.0))
    }
    report(tmp_path, paths, figures=True)
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", f"--window-size={WIDTH},900"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=DRIVER), options=options
    )
    try:
        driver.get((tmp_path / "report" / "report.html").as_uri())
        layout = driver.execute_script(LAYOUT)
    finally:
        driver.quit()
    assert layout["scroll"] <= layout["page"], layout  # no sideways scrolling
    assert layout["over"] == [], layout["over"]
    assert layout["broken"] == 0 and len(layout["alts"]) > 10
    assert all(len(alt) > 40 for alt in layout["alts"])  # says what is shown, not a file name
