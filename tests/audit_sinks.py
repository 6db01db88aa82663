"""Audit sinks for tests: one that always fails (the failure modes), one that keeps its records."""

from __future__ import annotations


class BrokenSink:
    """A sink whose disk is full."""

    def write(self, record):
        raise OSError("disk full")

    def close(self):
        pass


class ListSink:
    """A sink that keeps its records in a list, for tests that read what was recorded."""

    def __init__(self):
        self.records = []

    def write(self, record):
        self.records.append(record)

    def close(self):
        pass
