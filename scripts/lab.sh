#!/usr/bin/env bash
# Run the chapters live: JupyterLab from the project's environment, opened on book/.
# jupytext lets JupyterLab open the chapters' .md files as notebooks (right click > Open With > Notebook).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup_env.sh"
source "$here/env.sh"
cd "$root/book"
exec jupyter lab "$@"
