"""Errors the command line reports without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; printed without a traceback."""
