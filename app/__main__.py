"""``python -m app`` runs the ``memvault`` command."""

from app.cli import main

main()
