"""One exception hierarchy; each error also inherits the builtin it resembles."""
from __future__ import annotations


class ApplianceError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(ApplianceError, ValueError):
    """The configuration is invalid; ``errors`` lists every problem, each with its key path."""

    def __init__(self, errors: list[str], source: str = "<config>"):
        self.errors = list(errors)
        self.source = source
        super().__init__(f"{source}: " + "; ".join(self.errors))

    def report(self) -> str:
        n = len(self.errors)
        head = f"{self.source}: {n} error{'s' if n != 1 else ''}"
        return "\n".join([head] + [f"  {e}" for e in self.errors])


class EventError(ApplianceError, ValueError):
    """An input event is malformed or does not fit the configuration."""

    def __init__(self, message: str, line: int | None = None):
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


class JournalError(ApplianceError, RuntimeError):
    """The journal cannot be opened or is of an unknown schema version."""
