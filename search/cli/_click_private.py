"""typer's private name digitune relies on (the boundary with typer): the click it carries inside.

typer 0.20 and newer carry their own click, whose exception classes they do not export;
older typer runs on the click package. tests/search/test_boundaries.py checks ``REQUIRED``.
"""

from __future__ import annotations

try:
    from typer._click import exceptions as click_errors
except ImportError:  # older typer runs on the click package
    from click import exceptions as click_errors  # type: ignore[no-redef]

REQUIRED = (("typer._click", "exceptions.UsageError"),)

__all__ = ["click_errors"]
