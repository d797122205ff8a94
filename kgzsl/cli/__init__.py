"""The ``kgzsl`` command line: one small function per subcommand over the library.

Heavy imports happen inside the handlers so that ``kgzsl --help`` starts fast.
"""

from kgzsl.cli.main import build_parser, main

__all__ = ["main", "build_parser"]
