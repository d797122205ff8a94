"""The errors kgzsl raises for problems with what it was given or where it runs.

Every such error derives from :class:`KgzslError`, so ``except KgzslError`` catches the problems a
user can fix (a bad option value, a missing file, a damaged run folder, a missing WordNet) and
nothing else: any other exception is a bug in kgzsl or below it. The ``kgzsl`` command reports a
``KgzslError`` as one line (exit code 1) and lets any other exception show its traceback.

A few kinds, each also deriving from the built-in exception it replaces, so that existing
``except ValueError`` / ``except FileNotFoundError`` / ``except RuntimeError`` code keeps working:

- :class:`InputError` (a ``ValueError``): a value, list, config or file content is wrong;
- :class:`NotFoundError` (a ``FileNotFoundError``): a file or folder that was named does not exist;
- :class:`OutputError` (an ``OSError``): an output file or folder cannot be created there;
- :class:`SetupError` (a ``RuntimeError``): the machine or job lacks something (WordNet files, CUDA,
  a download) or changed under a running job; :class:`MissingPackageError` (also an ``ImportError``)
  when it is an optional package.

Modules define their specific errors on top of these (``LabelError(InputError)``,
``RunNotFoundError(NotFoundError)``, ...).

Example:
    >>> from kgzsl.errors import InputError, KgzslError
    >>> try:
    ...     raise InputError("top_k must be >= 1, got 0", cli_message="--top-k must be >= 1, got 0")
    ... except KgzslError as exc:
    ...     print(exc, "|", exc.cli_text())
    top_k must be >= 1, got 0 | --top-k must be >= 1, got 0
"""

from __future__ import annotations

__all__ = ["KgzslError", "InputError", "NotFoundError", "OutputError", "SetupError", "MissingPackageError"]


class KgzslError(Exception):
    """Base of every error kgzsl raises for a problem the user can fix (never for a bug).

    The message names the input and the fix in words that fit the Python API (``sense=``). Where the
    fix reads differently on the command line (``--sense``), the error also carries that wording.

    Args:
        *args: The message (as for any exception).
        cli_message: The same message for ``kgzsl`` command-line users, naming options and commands
            instead of Python arguments; None when the message fits both.

    Attributes:
        cli_message: See above.
    """

    def __init__(self, *args: object, cli_message: str | None = None) -> None:
        super().__init__(*args)
        self.cli_message = cli_message

    def cli_text(self) -> str:
        """The message as the ``kgzsl`` command prints it: :attr:`cli_message` if set, else ``str(self)``."""
        return self.cli_message or str(self)


class InputError(KgzslError, ValueError):
    """A value, list, config or file content given to kgzsl is wrong; the message says how to fix it."""


class NotFoundError(KgzslError, FileNotFoundError):
    """A file or folder given to kgzsl does not exist; the message names it and how to make it."""


class OutputError(KgzslError, OSError):
    """An output cannot be written where it was asked for (no permission, a file in the way, no space)."""


class SetupError(KgzslError, RuntimeError):
    """The environment lacks something kgzsl needs (WordNet, a package, CUDA, a download) or changed under it."""


class MissingPackageError(SetupError, ImportError):
    """An optional package kgzsl needs for this is not installed; the message names the ``pip install``."""
