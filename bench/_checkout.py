"""Which checkout a benchmark runs: this one, or ``$DIGITUNE_CHECKOUT`` (an older one, side by side).

``install()`` maps ``digitune`` and its rooms (``digitune.search`` -> ``CHECKOUT/search``, ...)
to that checkout ahead of the installed package, in this process and, through
``bench/_site/sitecustomize.py`` on ``PYTHONPATH``, in every process it starts, workers
included: a benchmark never mixes two checkouts' code. A checkout from before the
``digitune`` import root also keeps its own top-level ``search``/``models`` on the path.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CHECKOUT = Path(os.environ.get("DIGITUNE_CHECKOUT") or BENCH.parent).resolve()
ROOMS = ("search", "models", "dashboard")


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """``digitune`` and ``digitune.<room>`` from CHECKOUT; everything below them follows their ``__path__``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "digitune" and (CHECKOUT / "digitune" / "__init__.py").exists():
            folder = CHECKOUT / "digitune"
        elif fullname.startswith("digitune.") and fullname.split(".")[1] in ROOMS and fullname.count(".") == 1:
            folder = CHECKOUT / fullname.split(".")[1]
        else:
            return None
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


def install() -> Path:
    """Run CHECKOUT's code here and in child processes; returns CHECKOUT."""
    if not any(isinstance(f, _CheckoutFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _CheckoutFinder())
    if not (CHECKOUT / "digitune").is_dir() and str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))  # a checkout from before the import root
    os.environ["DIGITUNE_CHECKOUT"] = str(CHECKOUT)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(BENCH / "_site") not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(BENCH / "_site"), *paths])
    return CHECKOUT


def cli(*args: str) -> list[str]:
    """A ``digitune`` command as a child process running CHECKOUT (old checkouts: ``-m search.cli``)."""
    module = "digitune.search.cli" if (CHECKOUT / "digitune").is_dir() else "search.cli"
    return [sys.executable, "-m", module, *args]
