#!/usr/bin/env bash
# Build the book: set up the environment, execute every chapter, write the HTML.
# Fails on any error in any chapter (execution errors and Sphinx warnings are fatal).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup_env.sh"
source "$here/env.sh"
cd "$root"
start=$(date +%s)
jupyter-book build "$root" -W --keep-going "$@"
echo
echo "Book built in $(( $(date +%s) - start )) s. Open: file://$root/_build/html/index.html"
