"""Contracts: every message one component publishes and another reads, as a typed model."""
