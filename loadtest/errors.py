"""The traffic half's exceptions: what went wrong, on one line, naming what it was doing."""

from __future__ import annotations


class TrafficError(Exception):
    """The traffic could not be run to the end (the generator failed, or ran out of time)."""


class SetupError(TrafficError):
    """The accounts could not be opened or funded; the message names the tenant and account."""
