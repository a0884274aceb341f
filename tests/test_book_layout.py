"""The built book as a new reader sees it (issue 40), measured in headless Chromium at 1400 x 900:

- the summary's counts and the verdict of every item are visible in the first two screens, and the
  landing page shows the overview figure;
- no rendered table holds "...", "NaN" or a pandas index column;
- no figure is shown so small that its text falls below 10 px: the book draws figures at 150 dpi
  with text of 10 pt and more (``aprbook.display.book_style``), so a figure shown at less than
  ``MIN_SCALE`` of its pixel width would show text smaller than that;
- no chapter is longer than about 10 screens before its appendix;
- no code cell is shown by default except the parameters.

Each page is loaded in an iframe of a small local page whose script measures it and writes the
numbers into its own DOM, which Chromium dumps (no browser automation library needed).
"""
from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import socketserver
import threading
from html import unescape

import pytest

from test_book_browser import CHROMIUM, HTML, chapters, chromium  # noqa: F401  (skips as that module does)

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 1400, 900
#: 10 px / (10 pt at 150 dpi = 20.8 px): the least a figure may be scaled down on the page
MIN_SCALE = 10 / (10 * 150 / 72)
SCREENS = 10

MEASURE = """<!doctype html><html><body>
<iframe id="f" src="PAGE" style="width:WIDTHpx;height:HEIGHTpx;border:0"></iframe>
<pre id="out">pending</pre>
<script>
document.getElementById('f').addEventListener('load', function () {
  setTimeout(function () {
    const d = document.getElementById('f').contentDocument;
    const main = d.querySelector('main') || d.body;
    const top = main.getBoundingClientRect().top + d.defaultView.scrollY;
    const heads = [...d.querySelectorAll('h2, h1')].filter(h => /^appendix/i.test(h.textContent.trim()));
    const end = heads.length ? heads[0].getBoundingClientRect().top + d.defaultView.scrollY
                             : d.documentElement.scrollHeight;
    const imgs = [...d.querySelectorAll('img')].filter(i => i.src.includes('_images/') && i.naturalWidth > 0)
      .map(i => ({src: i.src.split('/').pop(), natural: i.naturalWidth, shown: i.getBoundingClientRect().width}));
    const cells = [...d.querySelectorAll('td, th')].map(c => c.textContent.trim());
    const indexTh = [...d.querySelectorAll('table.dataframe tbody th')].length;
    const shownCode = [...d.querySelectorAll('.cell:not(.tag_parameters) > .cell_input')]
      .filter(c => !c.closest('details:not([open])') && c.getBoundingClientRect().height > 0).length;
    const rows = [...d.querySelectorAll('table tbody tr')]
      .map(r => ({text: r.textContent.trim().slice(0, 40), bottom: r.getBoundingClientRect().bottom + d.defaultView.scrollY}));
    const bold = [...d.querySelectorAll('p strong')].map(b => ({text: b.textContent.trim(),
      bottom: b.getBoundingClientRect().bottom + d.defaultView.scrollY}));
    document.getElementById('out').textContent = JSON.stringify({results: end - top, imgs: imgs,
      dots: cells.filter(t => t === '...' || t === '…').length, nan: cells.filter(t => t === 'NaN').length,
      indexTh: indexTh, shownCode: shownCode, rows: rows, bold: bold});
  }, 3000);
});
</script></body></html>"""


@pytest.fixture(scope="module")
def server():
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(HTML))
    with socketserver.TCPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
        httpd.shutdown()


def measure(server, tmp_path, page: str) -> dict:
    probe = HTML / "_layout_probe.html"
    probe.write_text(MEASURE.replace("PAGE", "/" + page).replace("WIDTH", str(WIDTH)).replace("HEIGHT", str(HEIGHT)))
    try:
        dom = chromium(tmp_path, "--dump-dom", f"--window-size={WIDTH},{HEIGHT}", server + probe.name)
    finally:
        probe.unlink()
    m = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert m and m.group(1) != "pending", f"{page}: the probe did not measure the page"
    return json.loads(unescape(m.group(1)))


#: reference pages, not chapters: no length limit
REFERENCE = ("book/api.html", "book/guide.html", "book/references.html")


@pytest.mark.parametrize("page", chapters())
def test_a_page_reads_at_a_glance(page, server, tmp_path):
    got = measure(server, tmp_path, page)
    assert got["dots"] == 0, f"{page}: a table shows '...' (cut)"
    assert got["nan"] == 0, f"{page}: a table shows NaN"
    assert got["indexTh"] == 0, f"{page}: a table shows its pandas index"
    assert got["shownCode"] == 0, f"{page}: {got['shownCode']} code cells shown (only the parameters may be)"
    small = [f"{i['src']} at {i['shown'] / i['natural']:.2f}" for i in got["imgs"]
             if i["shown"] < MIN_SCALE * i["natural"] - 1]
    assert not small, f"{page}: figures shown so small that their text is under 10 px: {small}"
    assert page in REFERENCE or got["results"] <= SCREENS * HEIGHT, \
        f"{page}: {got['results'] / HEIGHT:.1f} screens before the appendix (at most {SCREENS})"


def test_the_summary_gives_the_counts_and_every_verdict_in_two_screens(server, tmp_path):
    got = measure(server, tmp_path, "notebooks/09_reproduction_summary.html")
    counts = [b for b in got["bold"] if b["text"].startswith("Of ") and "items" in b["text"]]
    assert counts and counts[0]["bottom"] <= 2 * HEIGHT, "the verdict counts are not in the first two screens"
    items = [r for r in got["rows"] if re.match(r"(Fig|Table) 4\.\d+", r["text"])]
    assert len(items) >= 16, f"the compact table lists {len(items)} items"
    assert max(r["bottom"] for r in items[:16]) <= 2 * HEIGHT, "not every item's verdict is in the first two screens"


def test_the_landing_page_shows_the_overview(server, tmp_path):
    got = measure(server, tmp_path, "book/intro.html")
    assert any(i["src"].startswith("overview") for i in got["imgs"]), "the landing page has no overview figure"
