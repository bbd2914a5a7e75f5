"""``python -m digitune``: the same as the ``digitune`` command."""

from digitune.search.cli import main

main()
