"""The base of the errors kgzsl raises for bad input (files, labels, configs), so callers can catch them all."""

__all__ = ["KgzslError"]


class KgzslError(Exception):
    """Base class of kgzsl's user-facing errors: the message names the input and how to fix it."""
