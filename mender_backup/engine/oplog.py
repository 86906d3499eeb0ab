"""Transitional: `mender-backup oplog` lives in engine/ship.py. cli.py (being split into a
cli/ package by another branch) still imports `engine.oplog`; once that split imports
engine.ship, delete this module."""

from .ship import OplogOptions, run

__all__ = ["OplogOptions", "run"]
