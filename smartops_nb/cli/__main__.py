"""``python -m smartops_nb.cli``: the ``smartops`` command."""
import sys

from .main import main

sys.exit(main())
