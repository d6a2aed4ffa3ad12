"""Data shipped with the reference implementation (the synthetic sanctions watch list)."""
