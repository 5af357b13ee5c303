"""Supervision suite (a package so its conftest does not shadow the root one)."""
