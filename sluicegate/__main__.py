"""``python -m sluicegate`` runs the CLI."""

from sluicegate.cli import main

main()
