"""``python -m digitune.search.cli``: how digitune starts its worker and agent processes."""

from . import main

main()
