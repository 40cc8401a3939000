"""``python3 -m virtabs.remote``: the remote helper (the same as the ``virtabs-remote`` command)."""

from __future__ import annotations

import sys

from ._helper import main

if __name__ == "__main__":
    sys.exit(main())
