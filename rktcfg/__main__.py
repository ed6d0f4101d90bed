"""``python -m rktcfg``: the same entry point as the ``rktcfg`` command."""

import sys

from rktcfg.cli.main import main

sys.exit(main())
