"""An audit sink that always fails, for the failure-mode tests."""

from __future__ import annotations


class BrokenSink:
    """A sink whose disk is full."""

    def write(self, record):
        raise OSError("disk full")

    def close(self):
        pass
