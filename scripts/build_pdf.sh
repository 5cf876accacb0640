#!/usr/bin/env bash
# Build the book as one PDF: _build/pdf/mrfbook.pdf.
# Builds the HTML book first (scripts/build_book.sh, skipped when _build/html exists and
# MRFBOOK_PDF_REBUILD is not 1), then prints every page in table-of-contents order with headless
# Chromium and joins them with pypdf (scripts/build_pdf.py).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"
cd "$root"
if [ ! -f "$root/_build/html/index.html" ] || [ "${MRFBOOK_PDF_REBUILD:-0}" = 1 ]; then
  bash "$here/build_book.sh"
fi
bash "$here/setup_browser.sh"
python "$here/build_pdf.py" "$@"
