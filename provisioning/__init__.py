"""Device identity, claim/CSR flow, desired/reported config, commands."""
