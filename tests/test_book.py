"""The rendered book, opened page by page in headless Chromium.

Builds the book from the committed notebooks (no execution: nbval re-executes them in
test_notebooks.py), serves it on localhost and checks every page: it loads with a title,
every image decodes, every figure has a caption, equations are rendered by the MathJax
copy shipped with the book, and nothing is requested from another host. A screenshot of
chapter 1 goes to test-artifacts/chapter1.png.

Needs the Debian packages chromium and chromium-driver, and MathJax under
book/_static/mathjax (`make mathjax`). Without them the test is skipped, except under
CI=true, where it fails.
"""

import functools
import http.server
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MATHJAX = ROOT / "book" / "_static" / "mathjax" / "tex-chtml.js"
ARTIFACTS = ROOT / "test-artifacts"
REMOTE_ASSET = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the browser check; .ci/run installs it)")
    pytest.skip(f"{reason}: `sudo apt-get install chromium chromium-driver` "
                "(or `make browser-deps`) and `make mathjax` enable the browser check")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the book into a temporary folder and serve it; yield (base URL, html folder)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        _unavailable(f"missing {', '.join(missing)}")
    if not MATHJAX.exists():
        _unavailable(f"missing {MATHJAX.relative_to(ROOT)}")
    out = tmp_path_factory.mktemp("book")
    py = sys.executable
    subprocess.run([py, "-m", "diffusion_study.ledger", "--results", "results",
                    "--claims", "book/claims.yml", "--out", "book/_generated/claims.md"],
                   cwd=ROOT, check=True)
    build = subprocess.run(
        [str(Path(py).with_name("jupyter-book")), "build", ".", "--path-output", str(out),
         "--config", "book/_config.yml", "--toc", "book/_toc.yml", "-W", "--keep-going"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert build.returncode == 0, f"book build failed:\n{build.stdout[-6000:]}\n{build.stderr[-3000:]}"
    html = out / "_build" / "html"
    handler = functools.partial(_QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", html
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def driver(site):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach out
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,2200",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(60)
    yield browser
    browser.quit()


def _pages(html: Path) -> list[str]:
    skip = ("_static", "_sources", "_images")
    return sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                  if not p.relative_to(html).parts[0] in skip)


def test_book_has_the_expected_pages(site):
    _, html = site
    pages = _pages(html)
    for page in ("index.html", "book/intro.html", "notebooks/01_elbo.html",
                 "book/_generated/claims.html", "book/reproduce.html", "book/bibliography.html"):
        assert page in pages


def test_no_page_links_an_asset_on_another_host(site):
    _, html = site
    offenders = [p for p in _pages(html) if REMOTE_ASSET.search((html / p).read_text("utf-8"))]
    assert offenders == [], f"pages that load scripts/styles/images from the network: {offenders}"


_PAGE_REPORT = r"""
const done = arguments[arguments.length - 1];
const deadline = Date.now() + 30000;
function report() {
  const maths = [...document.querySelectorAll('.math')];
  const pending = maths.filter(e => !e.querySelector('mjx-container'));
  if (pending.length && Date.now() < deadline) { setTimeout(report, 200); return; }
  const main = (document.querySelector('main') || document.body).cloneNode(true);
  main.querySelectorAll('pre, code, script, style, mjx-container').forEach(e => e.remove());
  done({
    title: document.title,
    brokenImages: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    figures: document.querySelectorAll('figure').length,
    uncaptioned: [...document.querySelectorAll('figure')]
        .filter(f => !(f.querySelector('figcaption') && f.querySelector('figcaption').textContent.trim()))
        .map(f => f.id || f.outerHTML.slice(0, 80)),
    maths: maths.length,
    unrendered: pending.length,
    rendered: document.querySelectorAll('mjx-container').length,
    rawTex: /\\\(|\\\[|\$\$/.test(main.textContent),
    mathjax: window.MathJax && window.MathJax.version ? window.MathJax.version : null,
    resources: performance.getEntriesByType('resource').map(r => r.name),
  });
}
if (document.readyState === 'complete') report(); else window.addEventListener('load', report);
"""


def test_every_page_renders_offline(site, driver):
    base, html = site
    driver.set_script_timeout(60)
    problems, math_pages = [], []
    for page in _pages(html):
        url = base + page
        with urllib.request.urlopen(url) as response:
            assert response.status == 200, page
        driver.get(url)
        if page == "index.html":  # a redirect to the root page
            assert driver.current_url.endswith("book/intro.html"), driver.current_url
            page = "book/intro.html"
        info = driver.execute_async_script(_PAGE_REPORT)
        if not info["title"].strip() or "404" in info["title"]:
            problems.append(f"{page}: title {info['title']!r}")
        if info["brokenImages"]:
            problems.append(f"{page}: broken images {info['brokenImages']}")
        if info["uncaptioned"]:
            problems.append(f"{page}: figures without caption {info['uncaptioned']}")
        remote = [r for r in info["resources"] if not r.startswith(base)]
        if remote:
            problems.append(f"{page}: requests to other hosts {remote}")
        if info["maths"]:
            math_pages.append(page)
            if info["unrendered"] or info["rawTex"] or not info["rendered"]:
                problems.append(f"{page}: {info['unrendered']} of {info['maths']} equations "
                                f"not rendered (raw TeX left: {info['rawTex']})")
            if not info["mathjax"] or not any("/_static/mathjax/" in r for r in info["resources"]):
                problems.append(f"{page}: MathJax not loaded from the book's own copy")
    assert problems == [], "\n".join(problems)
    assert "notebooks/01_elbo.html" in math_pages


def test_chapter_one_figure_and_screenshot(site, driver):
    base, _ = site
    driver.get(base + "notebooks/01_elbo.html")
    info = driver.execute_async_script(_PAGE_REPORT)
    assert info["figures"] >= 1 and not info["uncaptioned"] and not info["brokenImages"]
    caption = driver.find_element("css selector", "figure figcaption").text
    assert re.search(r"Fig\. 1\.\d", caption), f"figure is not numbered: {caption!r}"
    driver.execute_script("document.querySelector('figure').scrollIntoView({block: 'center'})")
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "chapter1.png"))
