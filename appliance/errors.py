"""One exception hierarchy for every package of the product (gpiozero's ``exc.py`` is the
model): each error is an :class:`ApplianceError` and also inherits the builtin it
resembles, so ``except ValueError`` keeps working where it did.

    ApplianceError
    ├── ConfigError (ValueError)        a config file or document, every problem with its key path
    ├── EventError (ValueError)         an input event (a line, a POS request)
    ├── WireError (ValueError)          a cloud message (appliance.cloud.wire)
    ├── VocabularyError (ValueError)    a journal row of the wrong shape (appliance.vocabulary)
    ├── PulseError (ValueError)         a line of a pulse file (rf_receiver.pulses)
    ├── JournalError (RuntimeError)     the journal cannot be used
    └── HardwareError (RuntimeError)    a device: SourceError (rf), AudioError (microphone)
"""
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


class HardwareError(ApplianceError, RuntimeError):
    """A device cannot be opened or read (a radio, a microphone, a sensor)."""
