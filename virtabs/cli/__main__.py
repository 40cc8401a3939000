"""``python -m virtabs.cli``: the same as the ``virtabs`` console script."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    main()
