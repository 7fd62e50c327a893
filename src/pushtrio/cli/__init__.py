"""The command line: ``pushtrio serve | produce | watch | replay``."""

from .main import main

__all__ = ["main"]
