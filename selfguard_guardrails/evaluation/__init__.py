"""Evaluation tools: judges of refusal and degeneration (runners and calibration build on them)."""
