"""Render report.html in headless Chromium: the figures and the table must be in the DOM it builds,
and a screenshot must be a real page (right size, not one flat colour)."""

import re

import numpy as np

from tasktune.report.browser import dump_dom, screenshot


def test_rendered_dom_has_the_figures_and_table_rows(built, chromium):
    dom = dump_dom(built.html, chromium=chromium)
    for element_id in ("pareto-params", "pareto-latency", "accuracy-bars", "learning-curves"):
        assert re.search(rf'<svg[^>]*\bid="{element_id}"', dom), element_id
    assert re.search(r'<svg[^>]*\bid="confusion-[^"]+"', dom)
    table = dom[dom.index('id="results-table"') :]
    table = table[: table.index("</table>")]
    assert len(re.findall(r"<tr\b", table)) == 1 + len(built.comparison.cells)
    assert 'id="recommendation"' in dom and "prompt_tuning" in dom
    assert "<script>alert(1)</script>" not in dom  # escaped labels stayed text


def test_screenshot_is_a_real_page(built, chromium, tmp_path):
    import matplotlib.image

    png = screenshot(built.html, tmp_path / "report.png", size=(1400, 3000), chromium=chromium)
    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (3000, 1400)
    pixels = image[..., :3].reshape(-1, 3)
    assert np.ptp(pixels, axis=0).max() > 0.5  # dark text on a light page, not a blank screen
    assert len(np.unique((pixels[::97] * 255).astype(np.uint8), axis=0)) > 20  # plots bring colours
