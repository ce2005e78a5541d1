"""Bounds on cell values that every interface must be able to show."""

from __future__ import annotations

MAX_PARTS = 999_999_999
"""Most parts per run: the pendant's whole-number fields (PARTS, STAT) hold 9 digits."""
