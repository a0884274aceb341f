"""The built book in headless Chromium (Debian's `chromium`, or the browser named by $CHROMIUM):
every chapter opens, every figure is a readable image, math is typeset by the local MathJax (from
the sphinx-mathjax-offline package), no internal link is broken, and no page loads anything from
another host; every figure has its provenance note. Screenshots go to `_build/screenshots/`.

Run after `jupyter-book build` (`make browser`, part of `make test`, which says how to enable the
check where Chromium is absent); skips where Chromium or the built book is absent.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import socketserver
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import pytest
import yaml
from PIL import Image

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=15000"]

if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)", allow_module_level=True)
if not (HTML / "index.html").exists():
    pytest.skip("the book is not built (jupyter-book build .)", allow_module_level=True)


def chapters() -> list[str]:
    """Pages of the table of contents, as paths of built HTML files relative to _build/html."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    chapters = toc.get("chapters", []) + [c for part in toc.get("parts", []) for c in part["chapters"]]
    files = [toc["root"]] + [c["file"] for c in chapters]
    return [f + ".html" for f in files]


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler.log_message = lambda *a, **k: None
    with socketserver.TCPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
        httpd.shutdown()


def chromium(tmp_path, *args) -> str:
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                         capture_output=True, text=True, timeout=120)
    return out.stdout


class _Page(HTMLParser):
    """Collects what a rendered page loads and links to, and its element ids."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.resources, self.ids = [], [], [], set()
        self.math_rendered = self.math_errors = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("script", "img", "iframe", "audio", "video", "source") and a.get("src"):
            self.resources.append(a["src"])
        if tag == "link" and a.get("href") and a.get("rel") and {"stylesheet", "preload", "icon"} & set(
                a["rel"].split()):
            self.resources.append(a["href"])
        if tag == "mjx-container":
            self.math_rendered += 1
        if tag == "mjx-merror":
            self.math_errors += 1


@functools.lru_cache(maxsize=None)
def _ids(path: Path) -> frozenset:
    p = _Page()
    p.feed(path.read_text(errors="replace"))
    return frozenset(p.ids)


@pytest.mark.parametrize("page", chapters())
def test_chapter_renders_offline(page, server, tmp_path):
    url = urljoin(server, page)
    dom = chromium(tmp_path, "--dump-dom", url)
    assert "<html" in dom, f"{page}: chromium returned no DOM"
    parsed = _Page()
    parsed.feed(dom)
    # nothing from another host
    external = [r for r in parsed.resources if urlparse(urljoin(url, r)).hostname not in ("127.0.0.1", None)]
    assert not external, f"{page} loads from other hosts: {external}"
    # every figure is a readable image file
    for src in parsed.images:
        target = HTML / unquote(urlparse(urljoin(url, src)).path).lstrip("/")
        assert target.exists(), f"{page}: missing image {src}"
        if target.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif"):
            with Image.open(target) as im:
                im.verify()
    # every figure a notebook drew carries its provenance note (notebook, commit, profile, date, PNG + PDF)
    figures = [src for src in parsed.images if "_images/" in src]
    notes = dom.count("Made by")
    assert notes >= len(figures), f"{page}: {len(figures)} figures but {notes} provenance notes"
    assert dom.count(".pdf") >= notes, f"{page}: a provenance note without its PDF link"
    # math typeset by MathJax wherever the page has math
    source = (HTML / page).read_text(errors="replace")
    if 'class="math' in source:
        assert parsed.math_rendered > 0, f"{page}: math not typeset (MathJax did not run)"
    assert parsed.math_errors == 0, f"{page}: MathJax errors"
    # internal links resolve, anchors included
    for href in parsed.links:
        absolute, frag = urldefrag(urljoin(url, href))
        if urlparse(absolute).hostname != "127.0.0.1":
            continue
        target = HTML / unquote(urlparse(absolute).path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        assert target.exists(), f"{page}: broken link {href}"
        if frag and target.suffix == ".html":
            assert frag in _ids(target), f"{page}: broken anchor {href}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / (page.replace("/", "_").removesuffix(".html") + ".png")
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", url)
    assert shot.exists() and shot.stat().st_size > 10_000, f"{page}: no screenshot"
