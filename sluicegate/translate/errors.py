"""Errors of translation, and error bodies across the two wire shapes."""

from __future__ import annotations


class TranslationError(Exception):
    """The request cannot be translated faithfully; becomes a 400 naming ``param``."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
