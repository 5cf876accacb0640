"""Open every page of the built book in headless Chromium and check what a reader would see.

For each page listed in ``_toc.yml`` (plus ``index.html`` and any other page under
``_build/html/book/``) the test fails on

* a SEVERE entry in the browser console (a JavaScript error, or a resource of ours
  that failed to load; network failures of *other* hosts and a missing favicon are
  ignored: the test machine is offline and they are not the book's doing),
* an ``<img>`` that did not load (``naturalWidth == 0``),
* a link to a file of the build (same origin) whose target does not exist,
* an executed cell that shows an error (MyST-NB renders error outputs as
  ``div.output.traceback``; a ``Traceback`` printed to stderr counts too),
* a kernel-free slider (``.mrf-static-slider``, :mod:`mrfbook.report.gallery`) whose
  image does not change when the slider moves,
* an image shown below 60 % of its natural width that is not a link to itself (a click must be
  able to show it at full size; the book's ``readable_figures`` extension links every image),
* a printed output (``<pre>``) whose content is wider than its box and that neither scrolls
  (``overflow-x: auto`` or ``scroll``) nor wraps: its end would be cut off,
* a figure without a caption: an image in a cell output, or in a ``<figure>``, that is not
  inside a ``<figure>`` with a non-empty ``<figcaption>`` (the kernel-free sliders are such
  figures, titled by their caption),
* "chapter N" / "Chapters N" written in prose (paragraphs, list items, table cells, captions,
  admonitions; not code or printed output) without being a link,
* text naming a path of the build machine (``/work/``, ``/tmp/``, ``/home/``, ``/root/``,
  ``/Users/``, or a cache folder such as ``.cache/mrfbook`` given with its home folder), anywhere
  in the page's content, printed outputs included.

A full-page screenshot of each page is saved to ``_build/screenshots/<page>.png``.

The book is served by a threaded ``http.server`` on 127.0.0.1 (a free port) and
driven with Debian's ``/usr/bin/chromium`` and ``/usr/bin/chromedriver``
(``scripts/setup_browser.sh`` installs them).  Without a build or a browser the
tests skip, unless ``MRFBOOK_REQUIRE_BUILD=1`` (set by ``scripts/test.sh``), in
which case they fail.  ``test_checker_*`` run the same checker on a tiny generated
site to prove that it does catch each kind of problem.
"""

from __future__ import annotations

import base64
import functools
import http.server
import os
import re
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
TOC = ROOT / "_toc.yml"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REQUIRE_BUILD = os.environ.get("MRFBOOK_REQUIRE_BUILD") == "1"
PAGE_LOAD_TIMEOUT_S = 60
MAX_SCREENSHOT_HEIGHT = 30_000


def skip_or_fail(reason: str) -> None:
    """Skip, or fail when the test script demands a complete check (MRFBOOK_REQUIRE_BUILD=1)."""
    if REQUIRE_BUILD:
        pytest.fail(f"{reason} (MRFBOOK_REQUIRE_BUILD=1 makes this a failure)")
    pytest.skip(reason)


# ----------------------------------------------------------------------------- pages


def toc_files(toc: Path = TOC) -> list[str]:
    """Document names in the table of contents (``root`` first), e.g. ``book/02_simulation``."""
    import yaml

    data = yaml.safe_load(toc.read_text())
    names: list[str] = [data["root"]]

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node:
                names.append(str(node["file"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in data.items() if k != "root"})
    return [re.sub(r"\.(md|ipynb|rst)$", "", n) for n in dict.fromkeys(names)]


def toc_pages() -> list[str]:
    """Relative HTML paths to check: index.html and one page per toc entry."""
    return ["index.html"] + [f"{name}.html" for name in toc_files()]


# ----------------------------------------------------------------------------- server + browser


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - signature of the base class
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on http://127.0.0.1:<free port> from a background thread."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="book-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def chromium_options(user_data_dir: Path):
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,2000", f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not (p.is_file() and os.access(p, os.X_OK))]
    if missing:
        skip_or_fail(f"headless browser not installed: {', '.join(missing)} (run scripts/setup_browser.sh)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("selenium is not installed in this environment")
    profile = tmp_path_factory.mktemp("chromium-profile")
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=chromium_options(profile))
    browser.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    browser.set_script_timeout(PAGE_LOAD_TIMEOUT_S)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def book_url() -> Iterator[str]:
    if not (BUILD / "index.html").is_file():
        skip_or_fail(f"the book is not built: {BUILD / 'index.html'} is missing (run scripts/build_book.sh)")
    with serve(BUILD) as url:
        yield url


# ----------------------------------------------------------------------------- the checker


@dataclass
class PageReport:
    """What :func:`check_page` found on one page."""

    page: str
    problems: list[str] = field(default_factory=list)
    n_images: int = 0
    n_links: int = 0
    n_sliders: int = 0
    screenshot: Path | None = None

    def add(self, kind: str, detail: str) -> None:
        self.problems.append(f"{kind}: {detail}")

    def kinds(self) -> set[str]:
        return {p.split(":", 1)[0] for p in self.problems}


_URL_AT_START = re.compile(r"^(\S+?)(?:\s+\d+:\d+)?\s")


def is_foreign_noise(message: str, origin: str) -> bool:
    """True for console errors that are not the book's fault.

    * a missing ``/favicon.ico`` (the browser asks for it on its own);
    * a resource of ANOTHER host that failed to load (the test machine is offline; e.g. the
      require.js and widget-manager scripts MyST-NB links from CDNs for ipywidgets output);
    * MathJax 2's font probe: a font at ``about:blank``, blocked by Chrome;
    * MathJax 2's look for its local TeX ``.otf`` fonts (``_static/fonts/HTML-CSS/TeX/otf/``):
      the packaged MathJax ships only the STIX-Web web fonts, which it then uses.

    Everything else -- JavaScript errors (wherever thrown) and failed loads of our own
    files -- is kept.
    """
    # MathJax 2 probes font loading with an @font-face whose source is about:blank; Chrome blocks
    # it and logs these two lines on every page with mathematics. They are harmless.
    if message.startswith("about:blank - Failed to load resource: net::ERR_FAILED"):
        return True
    if "Access to font at 'about:blank'" in message and "blocked by CORS policy" in message:
        return True
    match = _URL_AT_START.match(message)
    url = match.group(1) if match else ""
    if url.startswith(origin) and urlsplit(url).path == "/favicon.ico" and "Failed to load resource" in message:
        return True
    if url.startswith(origin) and "/_static/fonts/HTML-CSS/TeX/otf/" in urlsplit(url).path and "404" in message:
        return True
    if url.startswith(("http://", "https://")) and not url.startswith(origin + "/"):
        return "Failed to load resource" in message or "net::ERR_" in message
    return False


_WAIT_FOR_PAGE_JS = """
// Wait until MathJax has typeset the page and every image has loaded (or a time limit passed),
// then a little longer so that late console messages are logged before they are read.
const done = arguments[arguments.length - 1];
const limit = Date.now() + arguments[0];
for (const img of document.images) { if (img.loading === "lazy") { img.loading = "eager"; } }
function images() {
  const pending = Array.from(document.images).filter(img => !img.complete);
  if (pending.length === 0 || Date.now() > limit) { setTimeout(() => done(pending.length), 300); }
  else { setTimeout(images, 50); }
}
const mj = window.MathJax;
if (mj && mj.Hub && mj.Hub.Queue) { mj.Hub.Queue(images); }                       // MathJax 2
else if (mj && mj.startup && mj.startup.promise) { mj.startup.promise.then(images, images); }  // MathJax 3
else { images(); }
"""

_INSPECT_JS = """
const text = el => (el.innerText || el.textContent || "").trim().slice(0, 300);
return {
  images: Array.from(document.images).map(img => ({
      src: img.currentSrc || img.src || img.getAttribute("src") || "",
      natural: img.naturalWidth, complete: img.complete})),
  links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
  errors: Array.from(document.querySelectorAll(".output.traceback, .output_traceback, .output.error"))
      .map(text),
  stderr: Array.from(document.querySelectorAll(".output.stderr, .output_stderr"))
      .map(text).filter(t => t.includes("Traceback")),
  sliders: document.querySelectorAll(".mrf-static-slider").length,
  ...readability(),
};

function readability() {
  const main = document.querySelector("main article, article.bd-article, main, [role=main]") || document.body;
  const where = el => {
    const fig = el.closest("figure[id], section[id], div[id]");
    return fig ? "#" + fig.id : "";
  };
  const shortSrc = img => {
    const src = img.currentSrc || img.src || "";
    return src.startsWith("data:") ? "data:image (inline)" : src.split("/").slice(-1)[0].slice(0, 80);
  };
  const selfLink = img => {
    const a = img.closest("a[href]");
    if (!a) { return false; }
    if (a.classList.contains("mrf-zoom")) { return true; }
    return a.href === (img.currentSrc || img.src);
  };
  const small = [], uncaptioned = [], cut = [], chapters = [], paths = [];
  for (const img of main.querySelectorAll("img")) {
    const rect = img.getBoundingClientRect();
    if (rect.width === 0 || img.naturalWidth === 0) { continue; }   // not shown (or not loaded: reported above)
    if (rect.width < 0.6 * img.naturalWidth && !selfLink(img)) {
      small.push(`${shortSrc(img)} shown at ${Math.round(rect.width)} of ${img.naturalWidth} px ${where(img)}`);
    }
    if (img.closest(".cell_output, .output, figure")) {
      const fig = img.closest("figure");
      const caption = fig ? fig.querySelector("figcaption") : null;
      if (!caption || !(caption.textContent || "").trim()) {
        uncaptioned.push(`${shortSrc(img)} ${where(img)}`.trim());
      }
    }
  }
  for (const pre of main.querySelectorAll("pre")) {
    if (pre.getBoundingClientRect().width === 0) { continue; }
    const style = getComputedStyle(pre);
    const scrolls = ["auto", "scroll"].includes(style.overflowX);
    const wraps = !["pre", "nowrap"].includes(style.whiteSpace);
    if (pre.scrollWidth > pre.clientWidth + 1 && !scrolls && !wraps) {
      cut.push(`${(pre.textContent || "").trim().split("\\n")[0].slice(0, 60)}... (${pre.scrollWidth} px in ${pre.clientWidth})`);
    }
  }
  const chapterWord = /\\b[Cc]hapters?\\s+\\d+/g;
  const prose = "p, li, td, th, caption, figcaption, dd, dt, .admonition, blockquote";
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest("script, style")) { continue; }
    const text = node.textContent;
    const machine = /(^|[^\\w~.$])(\\/(work|tmp|home|root|Users)\\/\\S*|\\/\\S*\\.cache\\/mrfbook\\S*)/.exec(text);
    if (machine) { paths.push(`${machine[2].slice(0, 80)} in "${text.trim().slice(0, 80)}"`); }
    if (el.closest("pre, code, a, nav, .MathJax, .MathJax_Preview, mjx-container, .cell_input") || !el.closest(prose)) {
      continue;
    }
    for (const m of text.matchAll(chapterWord)) {
      chapters.push(`"${m[0]}" in "${text.trim().slice(0, 80)}"`);
    }
  }
  return {small, uncaptioned, cut, chapters, paths};
}
"""

_MOVE_SLIDERS_JS = """
const done = arguments[arguments.length - 1];
const results = [];
const hash = s => { let h = 0; for (let i = 0; i < s.length; i++) { h = (h * 31 + s.charCodeAt(i)) | 0; } return h; };
const sliders = Array.from(document.querySelectorAll(".mrf-static-slider"));
for (const root of sliders) {
  const name = root.getAttribute("data-name") || "(unnamed)";
  const input = root.querySelector('input[type="range"]');
  const img = root.querySelector("img");
  if (!input || !img) { results.push({name, error: "no range input or no image"}); continue; }
  const min = Number(input.min || 0), max = Number(input.max || 100);
  if (!(max > min)) { results.push({name, error: `only one position (min ${min}, max ${max})`}); continue; }
  const before = hash(img.src), beforeLen = img.src.length;
  const target = Number(input.value) === max ? min : max;
  input.value = String(target);
  input.dispatchEvent(new Event("input", {bubbles: true}));
  input.dispatchEvent(new Event("change", {bubbles: true}));
  results.push({name, img, changed: hash(img.src) !== before || img.src.length !== beforeLen});
}
const limit = Date.now() + 10000;
(function poll() {
  const waiting = results.filter(r => r.img && !r.img.complete);
  if (waiting.length === 0 || Date.now() > limit) {
    done(results.map(r => ({name: r.name, error: r.error || null, changed: !!r.changed,
                            natural: r.img ? r.img.naturalWidth : 0})));
  } else { setTimeout(poll, 50); }
})();
"""


def _local_target(url: str, origin: str, root: Path) -> Path | None:
    """The file a same-origin URL points to (None for other hosts and non-http schemes)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or f"{parts.scheme}://{parts.netloc}" != origin:
        return None
    path = unquote(parts.path)
    target = root / path.lstrip("/")
    if path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target


def save_full_page_screenshot(driver, path: Path, width: int = 1280) -> Path:
    """Capture the whole page at a fixed layout width through the DevTools protocol.

    The viewport is resized to the page's full height (so the theme lays the page out exactly
    as in a tall window, with no horizontal scroll), captured, and restored.
    """
    driver.execute_script("window.scrollTo(0, 0)")
    height = int(driver.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"))
    height = max(1, min(height, MAX_SCREENSHOT_HEIGHT))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    try:
        time.sleep(0.3)  # let the layout and lazy images settle at the new size
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def check_page(driver, origin: str, root: Path, page: str, screenshot_dir: Path | None = None) -> PageReport:
    """Open ``origin/page`` and report every problem found (see the module docstring)."""
    report = PageReport(page)
    if not (root / page).is_file():
        report.add("missing page", f"{root / page} does not exist")
        return report
    driver.get_log("browser")  # drop messages of earlier pages
    driver.get(f"{origin}/{page}")
    pending = driver.execute_async_script(_WAIT_FOR_PAGE_JS, 20_000)
    if pending:
        report.add("image", f"{pending} image(s) still loading after 20 s")
    found = driver.execute_script(_INSPECT_JS)

    for image in found["images"]:
        if image["natural"] == 0:
            src = image["src"]
            report.add("image", f"not loaded: {src[:120] + '...' if len(src) > 120 else src}")
    report.n_images = len(found["images"])

    checked: set[Path] = set()
    for href in found["links"]:
        target = _local_target(href, origin, root)
        if target is None or target in checked:
            continue
        checked.add(target)
        if not target.is_file():
            report.add("broken link", f"{href} -> {target.relative_to(root) if target.is_relative_to(root) else target}")
    report.n_links = len(checked)

    for text in found["errors"]:
        report.add("cell error", text.splitlines()[-1] if text else "(empty error output)")
    for text in found["stderr"]:
        report.add("cell error", "Traceback on stderr: " + text.splitlines()[-1])

    for detail in found["small"]:
        report.add("small image", detail + " (not a link to itself)")
    for detail in found["cut"]:
        report.add("cut off", "printed output wider than its box, neither scrolling nor wrapped: " + detail)
    for detail in found["uncaptioned"]:
        report.add("no caption", detail)
    for detail in found["chapters"]:
        report.add("chapter without link", detail)
    for detail in found["paths"]:
        report.add("machine path", detail)

    report.n_sliders = found["sliders"]
    if report.n_sliders:
        for slider in driver.execute_async_script(_MOVE_SLIDERS_JS):
            if slider["error"]:
                report.add("slider", f"{slider['name']}: {slider['error']}")
            elif not slider["changed"]:
                report.add("slider", f"{slider['name']}: the image did not change when the slider moved")
            elif slider["natural"] == 0:
                report.add("slider", f"{slider['name']}: the new image did not load")

    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE" and not is_foreign_noise(entry.get("message", ""), origin):
            report.add("console", entry["message"][:400])

    if screenshot_dir is not None:
        name = Path(page).with_suffix("").name + ".png"
        report.screenshot = save_full_page_screenshot(driver, screenshot_dir / name)
    return report


# ----------------------------------------------------------------------------- the checker, checked

_PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def _png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    """A tiny solid-colour PNG (no dependencies)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    header = size.to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _slider_html(name: str, working: bool) -> str:
    """A slider like mrfbook.report.gallery's; ``working=False`` forgets to swap the image."""
    from mrfbook.report.gallery import static_slider_html

    if working:
        return static_slider_html([_png((200, 0, 0)), _png((0, 0, 200))], ["red", "blue"], title="t", name=name)
    return (f'<div class="mrf-static-slider" data-name="{name}"><input type="range" min="0" max="1" value="0">'
            f'<img src="data:image/png;base64,{base64.b64encode(_PNG_1x1).decode()}"><span>label</span></div>')


def _write_site(folder: Path) -> None:
    """good.html passes every check; bad.html fails each once (see the tests below)."""
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "ok.png").write_bytes(_png((0, 160, 0)))
    page = "<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>{body}</body></html>"
    (folder / "img" / "big.png").write_bytes(_png((0, 0, 160), size=400))
    long_line = "x = " + "1234567890 " * 40
    (folder / "good.html").write_text(page.format(title="good", body=(
        "<main><article><h1>Good</h1><img src='img/ok.png'><a href='bad.html#top'>other page</a>"
        "<a href='img/'>folder</a><a href='https://example.invalid/x.html'>external</a>"
        "<script async src='https://cdn.example.invalid/lib.js'></script>"
        "<div class='cell_output'><div class='output stderr'>a warning, no traceback</div></div>"
        # a wide figure shown small, but a link to itself, with a caption
        "<div class='cell_output'><figure><a class='mrf-zoom' href='img/big.png'>"
        "<img src='img/big.png' style='width:100px'></a><figcaption>Fig. 1.1 A caption.</figcaption></figure></div>"
        # an image shown small that links to its own file (no class needed)
        "<p><a href='img/big.png'><img src='img/big.png' style='width:50px'></a></p>"
        # a long printed line that scrolls, and one that wraps
        f"<pre style='width:200px;overflow-x:auto'>{long_line}</pre>"
        f"<pre style='width:200px;white-space:pre-wrap'>{long_line}</pre>"
        # chapter numbers: linked in prose; free in code and printed output
        "<p>As <a href='good.html'>chapter 3</a> and chapters <a href='good.html'>8</a>-"
        "<a href='good.html'>9</a> show; <code>chapter 4</code> is code.</p><pre>see chapter 5</pre>"
        "<p>The cache defaults to <code>~/.cache/mrfbook</code> or <code>$MRFBOOK_CACHE/x</code>; "
        "see https://example.invalid/home/x.</p>"
        + _slider_html("fine", True) + "</article></main>")))
    (folder / "img" / "index.html").write_text(page.format(title="folder", body="index"))
    (folder / "bad.html").write_text(page.format(title="bad", body=(
        "<h1 id='top'>Bad</h1><img src='img/missing.png'><a href='nothere.html'>broken</a>"
        "<div class='cell_output'><div class='output traceback highlight-ipythontb'><pre>"
        "Traceback (most recent call last)\nZeroDivisionError: division by zero</pre></div></div>"
        + _slider_html("stuck", False)
        + "<div class='cell_output'><img src='img/big.png' style='width:100px'></div>"  # small, no link, no caption
        + f"<pre style='width:200px;overflow:visible;white-space:pre'>{long_line}</pre>"  # cut off
        + "<div class='admonition'><p>As chapter 5 shows, and Chapters 8-9.</p></div>"  # no link
        + "<p>Figures written to /work/main/_build/x.json and /root/.cache/mrfbook/r.json.</p>"
        + "<script>throw new Error('boom from the page');</script>")))


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("site")
    _write_site(folder)
    with serve(folder) as url:
        yield url, folder


def test_checker_passes_a_clean_page(driver, tiny_site, tmp_path):
    url, folder = tiny_site
    report = check_page(driver, url, folder, "good.html", screenshot_dir=tmp_path)
    # The page asks for a script on another (unreachable) host and the browser for /favicon.ico:
    # both fail in the console, and both are noise that is not the page's fault.
    assert not report.problems, report.problems
    assert report.n_images == 4 and report.n_sliders == 1 and report.n_links == 4
    assert report.screenshot is not None and report.screenshot.read_bytes()[:4] == b"\x89PNG"


def test_checker_catches_every_kind_of_problem(driver, tiny_site):
    url, folder = tiny_site
    report = check_page(driver, url, folder, "bad.html")
    text = "\n".join(report.problems)
    assert report.kinds() == {"image", "broken link", "cell error", "slider", "console", "small image", "cut off",
                              "no caption", "chapter without link", "machine path"}, text
    assert "img/missing.png" in text  # the missing image (its 404 is ours: also a console error)
    assert "nothere.html" in text
    assert "ZeroDivisionError" in text
    assert "stuck: the image did not change" in text
    assert "boom from the page" in text
    assert "small image: big.png shown at 100 of 400 px" in text
    assert sum(p.startswith("no caption") for p in report.problems) == 1  # the sliders are not cell outputs
    assert sum(p.startswith("cut off") for p in report.problems) == 1
    assert '"chapter 5"' in text and '"Chapters 8"' in text
    assert "/work/main/_build/x.json" in text and "/root/.cache/mrfbook/r.json" in text
    missing = check_page(driver, url, folder, "absent.html")
    assert missing.kinds() == {"missing page"}


def test_foreign_noise_filter_is_specific():
    origin = "http://127.0.0.1:8000"
    assert is_foreign_noise(f"{origin}/favicon.ico - Failed to load resource: the server responded with a "
                            "status of 404 (File not found)", origin)
    assert is_foreign_noise("https://cdn.jsdelivr.net/npm/x.js - Failed to load resource: "
                            "net::ERR_NAME_NOT_RESOLVED", origin)
    assert not is_foreign_noise(f"{origin}/_static/x.js - Failed to load resource: the server responded with "
                                "a status of 404 (File not found)", origin)
    assert not is_foreign_noise(f"{origin}/book/a.html 12:7 Uncaught TypeError: x is undefined", origin)
    assert not is_foreign_noise("https://cdn.jsdelivr.net/npm/x.js 1:10 Uncaught ReferenceError: y", origin)
    assert is_foreign_noise(f"{origin}/book/a.html - Access to font at 'about:blank' from origin '{origin}' has "
                            "been blocked by CORS policy: Cross origin requests are only supported for ...", origin)
    assert is_foreign_noise("about:blank - Failed to load resource: net::ERR_FAILED", origin)
    assert is_foreign_noise(f"{origin}/_static/fonts/HTML-CSS/TeX/otf/MathJax_AMS-Regular.otf - Failed to load "
                            "resource: the server responded with a status of 404 (File not found)", origin)
    assert not is_foreign_noise(f"{origin}/_static/images/logo.png - Failed to load "
                                "resource: the server responded with a status of 404 (File not found)", origin)
    assert not is_foreign_noise(f"{origin}/book/a.html - Access to font at '{origin}/_static/f.woff' from origin "
                                f"'{origin}' has been blocked by CORS policy", origin)


# ----------------------------------------------------------------------------- the book


def test_toc_lists_the_chapters():
    files = toc_files()
    assert files[0] == "book/index", "the cover page is the root"
    chapters = [f for f in files if re.match(r"book/\d\d_", f)]
    assert chapters == sorted(chapters) and chapters[0] == "book/01_introduction", chapters
    assert "book/cli" in files and "book/running_live" in files and "book/execution_status" in files
    assert "book/notation" in files and "book/bibliography" in files


@pytest.mark.parametrize("page", toc_pages())
def test_book_page(page, driver, book_url):
    report = check_page(driver, book_url, BUILD, page, screenshot_dir=SCREENSHOTS)
    assert not report.problems, f"{page}:\n  " + "\n  ".join(report.problems)


def test_pages_outside_the_toc(driver, book_url):
    """Any other page under _build/html/book/ gets the same checks."""
    listed = set(toc_pages())
    extra = sorted(str(p.relative_to(BUILD)) for p in (BUILD / "book").glob("*.html")
                   if str(p.relative_to(BUILD)) not in listed)
    problems = []
    for page in extra:
        problems += check_page(driver, book_url, BUILD, page, screenshot_dir=SCREENSHOTS).problems
    assert not problems, "\n".join(problems)
