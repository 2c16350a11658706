"""Operator side: the reference cloud ingest and the fleet CLI (``fleetctl``)."""
