"""rktcfg: a declarative, configuration-driven pod runner for Linux.

Importing the package is free: every module below is imported only by the code that needs it,
so ``rktcfg --version`` and other quick commands do not pay for YAML, cerberus or rich.
"""

from rktcfg.version import __version__

__all__ = ["__version__"]
