"""A screenshot of a ``polymodal report`` page as a reader sees it in a browser: headless
Chromium (Debian's chromium + chromium-driver, through selenium) renders ``report.html``, and
the parts a reader looks at first are stacked into one PNG: the header (models, how to read),
the first target's robustness figure and its side-by-side table (opened, as a click would), and
the first clinical figures. Also prints whether any table or figure is wider than the page.

Usage::

    python bench/report_screenshot.py REPORT_DIR/report.html docs/report_demo.png [--width 1280]
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

from PIL import Image
from selenium import webdriver

# The page's parts as (top, bottom) in document pixels, found by the report's structure: the
# header (title to the marker legend), the first target's robustness figure to its side-by-side
# table, the first clinical section's first figure. The side-by-side table is opened first.
PARTS = """
const top = (e) => e.getBoundingClientRect().top + scrollY;
const bottom = (e) => e.getBoundingClientRect().bottom + scrollY;
const after = (start, test) => { for (let e = start.nextElementSibling; e; e = e.nextElementSibling) if (test(e)) return e; };
const side = [...document.querySelectorAll('body > details')].find(d => d.querySelector('summary').textContent.includes('side by side'));
side.open = true;
const target = [...document.querySelectorAll('body > h2')].find(h => h.textContent.startsWith('Target'));
const clinical = after(document.querySelector('body > h3'), e => e.tagName === 'DETAILS');
const figure = clinical.querySelector('figure');
return [[top(document.querySelector('h1')), bottom(document.querySelector('body > ul.legend'))],
        [top(target), bottom(side)],
        [top(clinical), bottom(figure)]];
"""
WIDEST = "return Math.max(...[...document.querySelectorAll('table, img')].map(e => e.getBoundingClientRect().right))"


def browser(width: int) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                     "--disable-dev-shm-usage", f"--window-size={width},1000"):  # fmt: skip
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def page_image(driver: webdriver.Chrome, width: int) -> Image.Image:
    """The whole page at ``width`` CSS pixels, one screenshot."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, height + 200)
    return Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--scale", type=float, default=0.75, help="resize the stacked PNG")
    args = parser.parse_args()
    driver = browser(args.width)
    try:
        driver.get(args.html.resolve().as_uri())
        spans = [(int(a) - 12, int(b) + 12) for a, b in driver.execute_script(PARTS)]
        page = page_image(driver, args.width)
        widest = driver.execute_script(WIDEST)
        viewport = driver.execute_script("return document.documentElement.clientWidth")
    finally:
        driver.quit()
    print(f"widest table or figure ends at {widest:.0f} px of a {viewport} px page")
    pieces = [page.crop((0, top, page.width, bottom)) for top, bottom in spans]
    gap = 24
    stacked = Image.new("RGB", (page.width, sum(p.height for p in pieces) + gap * 2), "#bbbbbb")
    y = 0
    for piece in pieces:
        stacked.paste(piece, (0, y))
        y += piece.height + gap
    size = (int(stacked.width * args.scale), int(stacked.height * args.scale))
    stacked.resize(size, Image.LANCZOS).save(args.png, optimize=True)
    print(f"wrote {args.png} ({args.png.stat().st_size / 1e6:.2f} MB, {size[0]}x{size[1]})")


if __name__ == "__main__":
    main()
