"""Leakage checks over a generation's reasoning trace and answer (secrets, PII, system prompt,
private context), each finding typed and redacted."""
