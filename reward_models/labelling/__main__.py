"""``python -m reward_models.labelling [export] ...``: the same as ``textrl label [export] ...``."""

import sys

from reward_models.labelling.cli import main

raise SystemExit(main(sys.argv[1:]))
