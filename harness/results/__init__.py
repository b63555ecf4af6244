"""The results format, both directions: the append-only store and the one validating reader/writer of records."""
