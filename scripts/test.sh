#!/usr/bin/env bash
# The project's test command (what .ci/run calls): set up the environment and the browser,
# build the book (executing every chapter), then run the library tests, the per-chapter checks
# and the browser checks of the built HTML.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
start=$(date +%s)
bash "$here/setup_env.sh"
bash "$here/setup_browser.sh"
bash "$here/build_book.sh"
source "$here/env.sh"
cd "$root"
export MRFBOOK_REQUIRE_BUILD=1
status=0
python -m pytest tests "$@" || status=$?
echo "test.sh: finished in $(( $(date +%s) - start )) s with status $status"
exit $status
