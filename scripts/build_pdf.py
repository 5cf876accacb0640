"""Print the built HTML book to one PDF, page by page in table-of-contents order.

Each page of ``_build/html`` is opened in headless Chromium (the browser of the book's test,
``scripts/setup_browser.sh``), left to finish its mathematics and images, and printed through
the DevTools protocol; the pages are then joined with ``pypdf``, with one bookmark per page.
Run it through ``scripts/build_pdf.sh``, which builds the book first if needed.

Why not LaTeX: the book's kernel-free sliders and its verdict box are HTML, which Sphinx's LaTeX
builder drops, and no LaTeX tool chain is part of the project's Python environment.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import re
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

_WAIT_JS = """
const done = arguments[arguments.length - 1];
const limit = Date.now() + arguments[0];
for (const img of document.images) { if (img.loading === "lazy") { img.loading = "eager"; } }
function images() {
  const pending = Array.from(document.images).filter(img => !img.complete);
  if (pending.length === 0 || Date.now() > limit) { setTimeout(() => done(pending.length), 300); }
  else { setTimeout(images, 50); }
}
const mj = window.MathJax;
if (mj && mj.Hub && mj.Hub.Queue) { mj.Hub.Queue(images); }
else if (mj && mj.startup && mj.startup.promise) { mj.startup.promise.then(images, images); }
else { images(); }
"""

# Print the article only: no sidebars, header or footer buttons; code shown as the page shows it.
_PRINT_CSS = """
@media print {
  .bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .header-article, .prev-next-area,
  .bd-footer, .bd-footer-content, .bd-footer-article, #pst-back-to-top, .theme-switch-button,
  .search-button, .toggle-secondary-sidebar, .primary-toggle, .secondary-toggle { display: none !important; }
  .bd-main .bd-content .bd-article-container { max-width: 100% !important; }
  .bd-container, .bd-container__inner, .bd-page-width { max-width: 100% !important; }
  figure, img, table, pre { break-inside: avoid; }
  a.mrf-zoom { cursor: auto; }
}
"""


def toc_pages(toc: Path) -> list[tuple[str, str]]:
    """(document name, part caption) for every page of ``_toc.yml``, root first."""
    import yaml

    data = yaml.safe_load(toc.read_text())
    pages = [(str(data["root"]), "")]
    for part in data.get("parts", []):
        for chapter in part.get("chapters", []):
            pages.append((str(chapter["file"]), part.get("caption", "")))
            pages.extend((str(s["file"]), part.get("caption", "")) for s in chapter.get("sections", []))
    return [(re.sub(r"\.(md|ipynb)$", "", name), caption) for name, caption in pages]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def print_book(html: Path, out: Path, *, timeout_s: float = 60.0) -> Path:
    """Print every page of the built book under ``html`` to ``out`` (one PDF) and return it."""
    from pypdf import PdfReader, PdfWriter
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    pages = toc_pages(ROOT / "_toc.yml")
    missing = [name for name, _ in pages if not (html / f"{name}.html").is_file()]
    if missing:
        raise SystemExit(f"build_pdf: pages missing from {html}: {', '.join(missing)} (build the book first)")
    handler = functools.partial(_Quiet, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    options = Options()
    options.binary_location = str(CHROMIUM)
    with tempfile.TemporaryDirectory() as profile:
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,2000", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(timeout_s)
        driver.set_script_timeout(timeout_s)
        writer = PdfWriter()
        try:
            for name, caption in pages:
                driver.get(f"{origin}/{name}.html")
                driver.execute_async_script(_WAIT_JS, int(timeout_s * 1000) // 2)
                driver.execute_script("const s = document.createElement('style'); s.textContent = arguments[0];"
                                      "document.head.appendChild(s);"
                                      "document.querySelectorAll('.mrf-verdict details').forEach(d => d.open = true);",
                                      _PRINT_CSS)
                title = driver.title.split("—")[0].split(" | ")[0].strip() or name
                pdf = driver.execute_cdp_cmd("Page.printToPDF", {
                    "printBackground": True, "preferCSSPageSize": False, "paperWidth": 8.27, "paperHeight": 11.69,
                    "marginTop": 0.5, "marginBottom": 0.5, "marginLeft": 0.5, "marginRight": 0.5,
                    "displayHeaderFooter": True, "headerTemplate": "<span></span>",
                    "footerTemplate": ("<div style='font-size:8px;width:100%;text-align:center;color:#666'>"
                                       f"{title} &middot; <span class='pageNumber'></span></div>"),
                })
                with tempfile.NamedTemporaryFile(suffix=".pdf") as part:
                    part.write(base64.b64decode(pdf["data"]))
                    part.flush()
                    first = len(writer.pages)
                    for page in PdfReader(part.name).pages:
                        writer.add_page(page)
                writer.add_outline_item(title=title, page_number=first)
                print(f"build_pdf: {name} ({title}): {len(writer.pages) - first} pages", flush=True)
        finally:
            driver.quit()
            server.shutdown()
    out.parent.mkdir(parents=True, exist_ok=True)
    writer.add_metadata({"/Title": "mrfbook: deep-learning MR Fingerprinting"})
    with out.open("wb") as f:
        writer.write(f)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the built HTML book")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "pdf" / "mrfbook.pdf", help="the PDF to write")
    args = parser.parse_args(argv)
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not exe.is_file():
            print(f"build_pdf: {exe} is missing (run scripts/setup_browser.sh)", file=sys.stderr)
            return 2
    out = print_book(args.html, args.out)
    print(f"build_pdf: wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
