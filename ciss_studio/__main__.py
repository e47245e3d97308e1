"""``python -m ciss_studio``: the studio's command (ciss_studio/cli.py)."""
import sys

from .cli import main

sys.exit(main())
