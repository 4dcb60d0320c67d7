"""Valhalla GO: an operator-governance service."""

__version__ = "0.1.0"
