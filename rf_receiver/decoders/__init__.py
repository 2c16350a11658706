"""One decoder per protocol, one explicit registry (``registry.py``)."""
