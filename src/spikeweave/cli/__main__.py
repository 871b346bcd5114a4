"""``python -m spikeweave.cli``: the ``spikeweave`` command."""

from . import main

main()
