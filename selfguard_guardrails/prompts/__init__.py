"""Prompt sets written by the project's authors (calibration, demo)."""
