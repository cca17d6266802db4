"""The rendered book, opened page by page in headless Chromium, at a desktop width (1280 px) and a phone's (390 px).

Builds the book from the committed notebooks (no execution: nbval re-executes them in
test_notebooks.py) after generating its pages from results/ the way `make book` does (the
claims ledger, the execution status, the citation page), serves it on localhost and checks
every page: it loads with a title and without a browser console error, every image decodes,
every figure has a caption, no glue, role or TeX is left unrendered (MathJax, from the copy
shipped with the book, reports no error either), code outputs scroll rather than clip, the
footer shows the version and the build date, and nothing is requested from another host.
What a reader would notice of the layout is measured too: nothing runs out of the content
column (an element wider than it that is not inside a box that scrolls), the page never
scrolls sideways, and at 1280 px no figure is scaled below 60 % of its own pixels (a figure
drawn wider than the column shrinks its text with it; plotting.legibility_problems checks the
same when it is drawn). A screenshot of each page at each width goes to
test-artifacts/<width>/<page path>.png (a long page in parts: .2.png, ...), listed with those measurements in
test-artifacts/review.md, the list to look through (chapter 1's first figure:
test-artifacts/chapter1.png).

The checks themselves are tested: a small book with a deliberate JavaScript error, an
unrendered glue role, raw TeX, a TeX error, a figure three times wider than the column and a
table that does not wrap must fail each of them.

Needs the Debian packages chromium and chromium-driver, and MathJax under
book/_static/mathjax (`make mathjax`). Without them the test is skipped, except under
CI=true, where it fails.
"""

import ast
import collections
import functools
import html as html_lib
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MATHJAX = ROOT / "book" / "_static" / "mathjax" / "tex-chtml.js"
ARTIFACTS = ROOT / "test-artifacts"
REMOTE_ASSET = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)
# Roles and glue that MyST did not render show up as their source text in the page.
RAW_MARKUP = re.compile(r"\{(?:glue(?::\w+)?|numref|ref|doc|eq|cite(?::\w+)?|term|download)\}`|\{glue:")
# TeX that MathJax did not typeset: display or inline delimiters, or an environment.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\$[^$\s][^$]*\$")
PAGE_SHOT_MAX_HEIGHT = 12000  # px: one screenshot; a taller page is shot in parts
PAGE_SHOT_PARTS = 8  # at most this many parts a page (96000 px)
DESKTOP, PHONE = (1280, 2200), (390, 844)  # the viewports every page is read at (CSS px)
MIN_FIGURE_SCALE = 0.6  # at the desktop width a figure shows at least this share of its pixels


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the browser check; .ci/run installs it)")
    pytest.skip(f"{reason}: `sudo apt-get install chromium chromium-driver` "
                "(or `make browser-deps`) and `make mathjax` enable the browser check")


def _version() -> str:
    """The version every page's footer shows (test_publishing.py checks it is pyproject.toml's)."""
    from diffusion_study.book.citation import version

    return version()


def _toc_files(toc: Path = ROOT / "book" / "_toc.yml") -> list[str]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    found.append(node[key])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load(toc.read_text(encoding="utf-8")))
    return found


def _chapters() -> list[str]:
    """The notebooks the book shows (e.g. "notebooks/01_elbo"), from its table of contents."""
    return [f for f in _toc_files() if f.startswith("notebooks/")]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(html: Path):
    handler = functools.partial(_QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _generate_pages(root: Path) -> None:
    """The pages `make book` writes before rendering, from results/ (see the Makefile)."""
    py = sys.executable
    for args in (
        ["diffusion_study.book.ledger", "--results", "results", "--claims", "book/claims.yml",
         "--out", "book/_generated/claims.md"],
        ["diffusion_study.book.status", "--results", "results", "--toc", "book/_toc.yml",
         "--notebooks", "notebooks", "--out", "book/_generated/status.md"],
        ["diffusion_study.book.citation", "cite-page", "--results", "results", "--notebooks", "notebooks",
         "--toc", "book/_toc.yml", "--out", "book/_generated/cite.md"],
    ):
        subprocess.run([py, "-m", *args], cwd=root, check=True)


def _build(root: Path, out: Path, config: Path, toc: Path, strict: bool = True) -> Path:
    jb = str(Path(sys.executable).with_name("jupyter-book"))
    build = subprocess.run(
        [jb, "build", ".", "--path-output", str(out), "--config", str(config), "--toc", str(toc),
         *(["-W", "--keep-going"] if strict else [])],
        cwd=root, capture_output=True, text=True, timeout=900,
    )
    assert build.returncode == 0, f"book build failed:\n{build.stdout[-6000:]}\n{build.stderr[-3000:]}"
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the book into a temporary folder and serve it; yield (base URL, html folder)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        _unavailable(f"missing {', '.join(missing)}")
    if not MATHJAX.exists():
        _unavailable(f"missing {MATHJAX.relative_to(ROOT)}")
    _generate_pages(ROOT)
    html = _build(ROOT, tmp_path_factory.mktemp("book"), ROOT / "book" / "_config.yml",
                  ROOT / "book" / "_toc.yml")
    server, base = _serve(html)
    yield base, html
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def driver(site):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach out
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for get_log
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,2200",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(60)
    browser.set_script_timeout(60)
    yield browser
    browser.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _pages(html: Path) -> list[str]:
    skip = ("_static", "_sources", "_images")
    return sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                  if not p.relative_to(html).parts[0] in skip)


_PAGE_REPORT = r"""
const done = arguments[arguments.length - 1];
const deadline = Date.now() + 30000;
function visibleText(root) {
  const copy = root.cloneNode(true);
  copy.querySelectorAll('pre, code, script, style, mjx-container, .headerlink').forEach(e => e.remove());
  return copy.textContent;
}
function report() {
  const maths = [...document.querySelectorAll('.math')];
  const pending = maths.filter(e => !e.querySelector('mjx-container'));
  if (pending.length && Date.now() < deadline) { setTimeout(report, 200); return; }
  const outputs = [...document.querySelectorAll('div.cell_output pre, div.cell_input pre, div.highlight pre')];
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
    mathErrors: [...document.querySelectorAll('mjx-merror')].map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80)),
    text: visibleText(document.body),
    clipped: outputs.filter(p => p.scrollWidth > p.clientWidth + 1
                                 && !['auto', 'scroll'].includes(getComputedStyle(p).overflowX))
                    .map(p => p.textContent.slice(0, 60)),
    footer: [...document.querySelectorAll('footer')].map(f => f.innerText).join('\n'),  // as shown
    height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),
    mathjax: window.MathJax && window.MathJax.version ? window.MathJax.version : null,
    resources: performance.getEntriesByType('resource').map(r => r.name),
    ...layout(),
  });
}
// What a reader sees of the layout: the content column, what runs out of it, how far each
// image is scaled down from its own pixels.
function describe(e) {
  const id = e.id ? '#' + e.id : (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ')[0] : '');
  return e.tagName.toLowerCase() + id + ' ' + (e.textContent || e.getAttribute('src') || '').trim().slice(0, 50);
}
function layout() {
  const col = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const box = col.getBoundingClientRect();
  const contained = e => {  // inside a box of the column that scrolls or clips it
    for (let a = e.parentElement; a && a !== col; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible') return true;
    }
    return false;
  };
  const over = [...col.querySelectorAll('*')].filter(e => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.right > box.right + 2 && getComputedStyle(e).visibility !== 'hidden'
           && !contained(e);
  });
  const outermost = over.filter(e => !over.includes(e.parentElement));
  return {
    column: Math.round(box.width),
    scrollWidth: document.documentElement.scrollWidth,
    searches: [...document.querySelectorAll('.search-button__button, form.bd-search')].filter(e => !col.contains(e)).filter(e => {
      const r = e.getBoundingClientRect();
      return r.width > 0 && r.height > 0 && r.right > 0 && r.left < window.innerWidth
             && getComputedStyle(e).visibility !== 'hidden';
    }).length,
    overflow: outermost.map(e => describe(e) + ' (' + Math.round(e.getBoundingClientRect().right - box.right) + ' px out)'),
    images: [...col.querySelectorAll('img')].filter(i => i.naturalWidth > 0).map(i => ({
      src: i.getAttribute('src'), shown: Math.round(i.getBoundingClientRect().width), natural: i.naturalWidth,
      figure: !!i.closest('figure')})),
  };
}
if (document.readyState === 'complete') report(); else window.addEventListener('load', report);
"""


def _page_problems(page: str, info: dict, console: list[dict], base: str, version: str | None) -> list[str]:
    """Everything wrong with one loaded page, as readable lines (empty: the page is fine)."""
    problems = []
    if not info["title"].strip() or "404" in info["title"]:
        problems.append(f"{page}: title {info['title']!r}")
    for entry in console:
        # index.html is only a redirect (written by sphinx-external-toc, no icon link): Chromium may
        # ask that page for /favicon.ico, which the book does not have; every real page links its icon.
        if page == "index.html" and "/favicon.ico" in entry.get("message", ""):
            continue
        if entry.get("level") == "SEVERE":
            problems.append(f"{page}: browser console error: {entry.get('message', '')[:300]}")
    if info["brokenImages"]:
        problems.append(f"{page}: broken images {info['brokenImages']}")
    if info["uncaptioned"]:
        problems.append(f"{page}: figures without caption {info['uncaptioned']}")
    remote = [r for r in info["resources"] if not r.startswith(base)]
    if remote:
        problems.append(f"{page}: requests to other hosts {remote}")
    raw = sorted({m.group(0) for m in RAW_MARKUP.finditer(info["text"])})
    if raw:
        problems.append(f"{page}: unrendered glue or roles in the page: {raw}")
    tex = sorted({m.group(0)[:40] for m in RAW_TEX.finditer(info["text"])})
    if tex or info["unrendered"]:
        problems.append(f"{page}: TeX left unrendered ({info['unrendered']} of {info['maths']} equations "
                        f"pending; raw: {tex})")
    if info["mathErrors"]:
        problems.append(f"{page}: MathJax errors {info['mathErrors']}")
    if info["maths"] and (not info["rendered"] or not info["mathjax"]
                          or not any("/_static/mathjax/" in r for r in info["resources"])):
        problems.append(f"{page}: MathJax not loaded from the book's own copy")
    if info["clipped"]:
        problems.append(f"{page}: code or output lines clipped, not scrollable: {info['clipped']}")
    problems += _layout_problems(page, info)
    if version is not None and not (f"Version {version}" in info["footer"]
                                    and re.search(r"Last updated on \d{4}-\d{2}-\d{2}", info["footer"])):
        problems.append(f"{page}: footer without the version or the build date: {info['footer']!r}")
    return problems


def _layout_problems(page: str, info: dict) -> list[str]:
    """What a reader would notice of the layout at this window width: anything running out of the
    content column (not inside a box that scrolls), a page that scrolls sideways, and (at a desktop
    width) a figure scaled below MIN_FIGURE_SCALE of its own pixels."""
    problems = []
    if info["overflow"]:
        problems.append(f"{page}: at {info['viewport']} px, wider than the content column "
                        f"({info['column']} px): {info['overflow'][:5]}")
    if info["scrollWidth"] > info["viewport"] + 1:  # a phone zooms such a page out
        problems.append(f"{page}: at {info['viewport']} px, the page is {info['scrollWidth']} px wide")
    if info["searches"] > 1:
        problems.append(f"{page}: at {info['viewport']} px, {info['searches']} search controls on show (one is enough)")
    if info["viewport"] >= DESKTOP[0]:
        for image in info["images"]:
            scale = image["shown"] / image["natural"]
            if image["figure"] and scale < MIN_FIGURE_SCALE:
                problems.append(f"{page}: at {info['viewport']} px, figure scaled to {scale:.0%} "
                                f"(< {MIN_FIGURE_SCALE:.0%}; {image['natural']} px drawn, {image['shown']} shown): "
                                f"{image['src']}")
    return problems


def _viewport(driver, width: int, height: int) -> None:
    """The page's viewport, as a phone has it below 600 px (a mobile layout, the viewport meta tag)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def _screenshot(driver, info: dict, path: Path, size: tuple[int, int]) -> list[Path]:
    """The whole page into `path` and, where it is taller than PAGE_SHOT_MAX_HEIGHT px, its next
    parts into <stem>.2.png, <stem>.3.png, ... (at most PAGE_SHOT_PARTS); then the viewport as it was."""
    total = max(int(info["height"]), size[1])
    height = min(total, PAGE_SHOT_MAX_HEIGHT)
    _viewport(driver, size[0], height)
    shots = []
    try:
        for part in range(min(PAGE_SHOT_PARTS, -(-total // height))):
            driver.execute_script("window.scrollTo(0, arguments[0])", part * height)
            shot = path if part == 0 else path.with_name(f"{path.stem}.{part + 1}.png")
            assert driver.save_screenshot(str(shot)), shot
            shots.append(shot)
    finally:
        driver.execute_script("window.scrollTo(0, 0)")
        _viewport(driver, *size)
    return shots


def _shot_name(page: str) -> str:
    return page.removesuffix(".html").replace("/", "_") + ".png"


def _check_pages(driver, base: str, pages: list[str], shots: Path | None, version: str | None,
                 size: tuple[int, int] = None) -> tuple[list[str], dict[str, dict]]:
    """Load every page in a viewport of `size` (default DESKTOP); return the problems found and
    each page's report. Screenshots go to shots/<width>/<page>.png."""
    size = size or DESKTOP
    if shots is not None:
        shots = shots / str(size[0])
        shots.mkdir(parents=True, exist_ok=True)
    _viewport(driver, *size)
    problems, reports = [], {}
    driver.get_log("browser")  # start from an empty console
    for page in pages:
        url = base + page
        with urllib.request.urlopen(url) as response:
            assert response.status == 200, page
        driver.get(url)
        if page == "index.html":  # a redirect to the root page
            if not driver.current_url.endswith("book/intro.html"):
                problems.append(f"index.html does not open the introduction: {driver.current_url}")
        info = driver.execute_async_script(_PAGE_REPORT)
        info["viewport"] = size[0]  # the window's width (a phone's layout viewport may grow past it)
        console = driver.get_log("browser")
        reports[page] = info
        problems += _page_problems(page, info, console, base, version)
        if shots is not None:
            info["shots"] = [p.name for p in _screenshot(driver, info, shots / _shot_name(page), size)]
    return problems, reports


# --- the book ------------------------------------------------------------------------------


def test_book_has_the_expected_pages(site):
    _, html = site
    pages = _pages(html)
    expected = {"index.html", "book/intro.html", "book/_generated/claims.html",
                "book/_generated/status.html", "book/_generated/cite.html", "book/reproduce.html",
                "book/notation.html", "book/contributing.html", "book/bibliography.html"}
    expected |= {f"{chapter}.html" for chapter in _chapters()}
    assert "notebooks/01_elbo.html" in expected
    assert expected <= set(pages), f"missing pages: {sorted(expected - set(pages))}"
    assert "genindex.html" not in pages, "the general index is empty: html_use_index is off"


def test_no_page_links_an_asset_on_another_host(site):
    _, html = site
    offenders = [p for p in _pages(html) if REMOTE_ASSET.search((html / p).read_text("utf-8"))]
    assert offenders == [], f"pages that load scripts/styles/images from the network: {offenders}"


def test_no_page_declares_an_inline_script_constant_twice(site):
    """Two inline `const X = ...` of one name on a page are a SyntaxError (sphinx-thebe's
    THEBE_JS_URL was, until sphinx_thebe left the extension list in book/_config.yml)."""
    _, html = site
    found = {}
    for page in _pages(html):
        text = (html / page).read_text("utf-8")
        scripts = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", text, re.S)
        names = collections.Counter(n for s in scripts for n in re.findall(r"\bconst\s+(\w+)\s*=", s))
        twice = sorted(n for n, k in names.items() if k > 1)
        if twice:
            found[page] = twice
    assert found == {}


def _review_list(reports: dict[tuple[int, int], dict[str, dict]], problems: list[str]) -> str:
    """test-artifacts/review.md: every page's screenshots at each width, to look at one by one,
    with what the check measured (content column, smallest figure scale, what ran out of it)."""
    lines = ["# Screenshot review list", "",
             "Every page of the book at each window width (tests/test_book.py writes it). Look at each "
             "screenshot: no cut-off column, no unreadable figure.", "",
             "| page | width | screenshot | column (px) | figures | smallest figure scale | out of the column |",
             "|---|---|---|---|---|---|---|"]
    for size, by_page in reports.items():
        for page, info in by_page.items():
            scales = [i["shown"] / i["natural"] for i in info["images"] if i["figure"]]
            shots = ", ".join(f"[{name}]({size[0]}/{name})" for name in info.get("shots", [_shot_name(page)]))
            lines.append(f"| {page} | {size[0]} | {shots} | {info['column']} | {len(scales)} | "
                         + (f"{min(scales):.0%} |" if scales else "- |"))
            lines[-1] += f" {len(info['overflow'])} |"
    lines += ["", "## Problems found", ""] + ([f"- {p}" for p in problems] or ["none"])
    return "\n".join(lines) + "\n"


def test_every_page_renders_offline_without_errors(site, driver):
    """Every page at a desktop width (1280 px) and a phone's (390 px): the checks above, and a
    screenshot of each under test-artifacts/<width>/ listed in test-artifacts/review.md."""
    base, html = site
    problems, reports = [], {}
    for size in (DESKTOP, PHONE):
        found, reports[size] = _check_pages(driver, base, _pages(html), ARTIFACTS, _version(), size)
        problems += found
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "review.md").write_text(_review_list(reports, problems), encoding="utf-8")
    assert problems == [], "\n".join(problems)
    desktop = reports[DESKTOP]
    assert desktop["notebooks/01_elbo.html"]["maths"] > 0
    assert 600 <= desktop["notebooks/01_elbo.html"]["column"] <= 760, desktop["notebooks/01_elbo.html"]["column"]
    assert reports[PHONE]["notebooks/01_elbo.html"]["column"] <= PHONE[0]
    for size in (DESKTOP, PHONE):
        for page in _pages(html):
            assert (ARTIFACTS / str(size[0]) / _shot_name(page)).exists()
    intro = desktop["index.html"]["text"]
    assert "claims of three papers" in intro and len(intro.split()) > 200, \
        "the landing page (book/intro.md) must have its content"


def test_chapter_one_figure_and_screenshot(site, driver):
    base, _ = site
    _viewport(driver, *DESKTOP)
    driver.get(base + "notebooks/01_elbo.html")
    info = driver.execute_async_script(_PAGE_REPORT)
    assert info["figures"] >= 1 and not info["uncaptioned"] and not info["brokenImages"]
    caption = driver.find_element("css selector", "figure figcaption").text
    assert re.search(r"Fig\. 1\.\d", caption), f"figure is not numbered: {caption!r}"
    driver.execute_script("document.querySelector('figure').scrollIntoView({block: 'center'})")
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "chapter1.png"))


def _expected_pasted_texts(notebook: Path) -> list[str]:
    """What each {glue:text}`key` (no format spec) of a chapter must show: the glued text as glued."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    glued = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            name = (out.get("metadata", {}).get("scrapbook") or {}).get("name")
            data = out.get("data", {})
            text = data.get("application/papermill.record/text/plain", data.get("text/plain"))
            if name and text is not None and not any("image/" in k for k in data):
                glued[name] = text
    expected = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for key in re.findall(r"\{glue:text\}`([^`:]+)(?::s)?`", cell.source):
                text = glued[key]
                try:
                    value = ast.literal_eval(text)
                except (SyntaxError, ValueError):
                    value = None
                expected.append(value if isinstance(value, str) else text)
    return expected


def test_glued_numbers_keep_their_format(site):
    """A number glued as formatted text ("0.550", "-11.50") is pasted with every digit it was
    glued with: myst-nb would read it back as a float (0.55); diffusion_study.book.notebook stops it."""
    _, html = site
    checked = 0
    for chapter in _chapters():
        expected = _expected_pasted_texts(ROOT / f"{chapter}.ipynb")
        page = (html / f"{chapter}.html").read_text("utf-8")
        # Sphinx's smart quotes turn ' into a typographic apostrophe: compare with straight ones
        pasted = collections.Counter(html_lib.unescape(re.sub(r"<[^>]+>", "", s)).replace("\u2019", "'")
                                     for s in re.findall(r'<span class="pasted-text">(.*?)</span>', page, re.S))
        missing = collections.Counter(expected) - pasted
        assert not missing, f"{chapter}: glued text shown differently from how it was glued: {dict(missing)}"
        checked += len(expected)
    assert checked > 0
    chapter_one = (html / "notebooks/01_elbo.html").read_text("utf-8")
    trailing_zero = [t for t in _expected_pasted_texts(ROOT / "notebooks/01_elbo.ipynb")
                     if re.fullmatch(r"-?\d+\.\d*0", t)]
    assert trailing_zero, "chapter 1 glues numbers with a trailing zero (e.g. 1.640)"
    assert all(f'<span class="pasted-text">{html_lib.escape(t, quote=False)}</span>' in chapter_one
               for t in trailing_zero)


def test_chapters_link_their_executed_notebook(site):
    """Each chapter's download button gives its notebook as executed (outputs included)."""
    import nbformat

    _, html = site
    for chapter in _chapters():
        page = (html / f"{chapter}.html").read_text("utf-8")
        name = Path(chapter).name
        assert f'href="../_sources/{chapter}.ipynb"' in page, f"{chapter}: no link to its notebook"
        nb = nbformat.read(str(html / "_sources" / f"{chapter}.ipynb"), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
        assert code and all(c.execution_count for c in code), f"{name}: the download is not executed"
        assert any(c.outputs for c in code)


def test_generated_pages_show_every_result(site):
    _, html = site
    from diffusion_study.book.results import read_results

    status = (html / "book/_generated/status.html").read_text("utf-8")
    cite = (html / "book/_generated/cite.html").read_text("utf-8")
    for record in read_results(ROOT / "results"):
        commit = record["provenance"]["git_commit"]
        assert commit[:7] in status and commit in status
        for cid, claim in record["claims"].items():
            assert re.search(rf"<td>\s*<p>{cid}</p>\s*</td>\s*<td>\s*<p>{claim['verdict']}</p>", status), cid
    for pdf in sorted((ROOT / "results").glob("*/*.pdf")):
        assert f"results/{pdf.parent.name}/{pdf.name}" in cite
    text = html_lib.unescape(re.sub(r"<[^>]+>", "", cite))
    assert "@software{diffusion_study" in text
    assert text.count("@misc{") == len(list((ROOT / "results").glob("*/*.pdf")))
    # The figures of a chapter in the book are numbered (a resolved {numref}).
    assert re.search(r"Fig\.\s*1\.1", text)


# --- the checks catch what they are meant to ------------------------------------------------

_FAULTS = {
    "ok": "# A fine page\n\nText and $x^2$ in line.\n",
    "js-error": "# A page with a script error\n\n<script>notDefinedAnywhere();</script>\n\nText.\n",
    "raw-glue": "# A page with an unrendered glue role\n\n<p>The value is {glue:text}`abar_T`.</p>\n",
    "raw-role": "# A page with an unrendered reference\n\n<p>See {numref}`fig-x` and {cite:p}`key`.</p>\n",
    "raw-tex": "# A page with raw TeX\n\n<p>An equation $$x = 1$$ that MathJax never saw.</p>\n",
    "tex-error": "# A page with a TeX error\n\n$$\n\\frac{1}{2} + x^2^3\n$$\n",
    "wide-figure": "# A page with a too-wide figure\n\n```{figure} wide.png\n:name: fig-wide\n\n"
                   "Eight panels side by side, drawn three times wider than the column.\n```\n",
    "wide-table": "# A page with an overflowing table\n\n<table style=\"white-space: nowrap\"><tr>"
                  + "".join(f"<td>column {i} of a printed table that never wraps</td>" for i in range(6))
                  + "</tr></table>\n",
}


def test_page_checks_fail_on_injected_faults(driver, tmp_path):
    """A small book with one deliberate fault per page: each page's check must name its fault."""
    src = tmp_path / "src"
    (src / "book").mkdir(parents=True)
    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text(encoding="utf-8"))
    sphinx = config["sphinx"]["config"]  # the book's own configuration, its static files in place
    sphinx["html_static_path"] = [str(ROOT / "book" / "_static")]
    sphinx["html_favicon"] = str(ROOT / sphinx["html_favicon"])
    config.pop("bibtex_bibfiles", None)
    config["sphinx"]["config"]["extensions"].remove("sphinxcontrib.bibtex")
    config["only_build_toc_files"] = True
    (src / "book" / "_config.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    for name, text in _FAULTS.items():
        (src / "book" / f"{name}.md").write_text(text, encoding="utf-8")
    from PIL import Image

    Image.new("RGB", (2000, 400), (90, 140, 200)).save(src / "book" / "wide.png")  # 34 % at 672 px
    toc = {"format": "jb-book", "root": "book/ok",
           "chapters": [{"file": f"book/{name}"} for name in _FAULTS if name != "ok"]}
    (src / "book" / "_toc.yml").write_text(yaml.safe_dump(toc), encoding="utf-8")
    # Not -W: the TeX error and the raw markup pass Sphinx; the browser must catch them.
    html = _build(src, tmp_path / "out", src / "book" / "_config.yml", src / "book" / "_toc.yml", strict=False)
    server, base = _serve(html)
    try:
        pages = [f"book/{name}.html" for name in _FAULTS]
        problems, _ = _check_pages(driver, base, pages, tmp_path / "shots", _version())
        phone, _ = _check_pages(driver, base, ["book/ok.html", "book/wide-table.html"], tmp_path / "shots",
                                _version(), PHONE)
    finally:
        server.shutdown()
        server.server_close()
    by_page = {p: [line for line in problems if line.startswith(p + ":")] for p in pages}
    assert by_page["book/ok.html"] == [], by_page["book/ok.html"]
    expect = {"js-error": "browser console error", "raw-glue": "unrendered glue",
              "raw-role": "unrendered glue or roles", "raw-tex": "TeX left unrendered",
              "tex-error": "MathJax errors", "wide-figure": "figure scaled to 34%",
              "wide-table": "wider than the content column"}
    for name, words in expect.items():
        found = by_page[f"book/{name}.html"]
        assert any(words in line for line in found), f"{name}: the check missed it; found {found}"
    assert any("notDefinedAnywhere" in line for line in by_page["book/js-error.html"])
    assert not [line for line in phone if line.startswith("book/ok.html")], phone
    assert any(line.startswith("book/wide-table.html: at 390 px, wider than the content column")
               for line in phone), phone
