"""``python -m memvault`` runs the ``memvault`` command."""

from memvault.cli import main

main()
