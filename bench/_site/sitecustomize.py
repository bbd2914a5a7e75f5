"""Started by Python in every process a benchmark runs: map ``digitune`` to the benchmark's checkout."""

import os
import sys

if os.environ.get("DIGITUNE_CHECKOUT"):
    _BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, _BENCH)
    try:
        import _checkout

        _checkout.install()
    finally:
        sys.path.remove(_BENCH)
