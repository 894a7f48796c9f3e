"""``python -m agents.cli ...`` runs the ``textrl`` command."""

from agents.cli import main

raise SystemExit(main())
