"""Contact Analyzer core: config, journal, clock, contacts, metrics, POS input, CLI."""
__version__ = "0.1.0"
