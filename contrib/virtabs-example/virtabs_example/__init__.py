"""virtabs-example: a complete, minimal third-party virtabs driver (``example:///``), in memory.

Kept light on purpose: virtabs imports :mod:`virtabs_example.driver` only when a URI names it.
"""

__version__ = "0.1.0"
