"""Exceptions raised by selfguard-guardrails.

Every error names the problem and the fix, so a user can act on the message alone.
They share one base class so callers can catch everything the library raises.
"""

from __future__ import annotations


class SelfGuardError(Exception):
    """Base class of every error this library raises on purpose."""


class ModelNotFoundError(SelfGuardError):
    """A model id, path or the embedded default could not be found locally."""


class CorruptFileError(SelfGuardError):
    """A GGUF, safetensors or cache file could not be read."""


class VectorMismatchError(SelfGuardError):
    """A steering vector was built for another model (fingerprint, layers or width differ)."""


class InvalidMessagesError(SelfGuardError, ValueError):
    """Chat messages are malformed: unknown role, missing content, empty prompt."""


class PromptTooLongError(SelfGuardError, ValueError):
    """The rendered prompt plus the token budget does not fit the model's context window."""


class InvalidSettingError(SelfGuardError, ValueError):
    """A steering or generation setting is out of range (NaN strength, bad layer index...)."""


class AuditLogError(SelfGuardError):
    """An audit sink could not write a record, or a log could not be read."""


class UnknownOptionError(InvalidSettingError, TypeError):
    """A keyword option the called method does not take (a `TypeError` too, as Python raises)."""
