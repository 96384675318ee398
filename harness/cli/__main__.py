"""``python -m harness.cli``: the same as the ``aurora-harness`` command."""

from harness.cli import main

main()
