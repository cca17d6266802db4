"""Metrics, intervals and verdict rules. Imports base only."""
