"""The engine layer: `SelfGuard`, the facade that routes each request through the gate, asks the
runtime to decode it with the method's steering, and hands the result to the leakage guard and the audit log."""

from .selfguard import SelfGuard

__all__ = ["SelfGuard"]
