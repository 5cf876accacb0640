"""``python -m mrfbook``: the command line (see :mod:`mrfbook.cli`).

Explained in book/cli.md.
"""

import sys

from mrfbook.cli import main

if __name__ == "__main__":
    sys.exit(main())
