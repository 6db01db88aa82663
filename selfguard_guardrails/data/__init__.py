"""Steering vectors shipped for known models, named by model fingerprint."""
