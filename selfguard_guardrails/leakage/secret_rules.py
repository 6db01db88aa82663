"""What a secret rule is, and the checks that tell a real value from a placeholder.

Shared by the provider formats (`provider_keys.py`) and the labelled secrets (`secrets.py`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from .findings import Severity
from .matches import entropy_classes, looks_like_placeholder

# Published example values (vendor documentation); they are public, so never a leak.
PUBLIC_EXAMPLES = frozenset({
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
})


@dataclass(frozen=True)
class SecretRule:
    subtype: str
    regex: re.Pattern[str]
    severity: Severity
    prefix: int = 4  # characters safe to show in the excerpt
    check: Callable[[str], bool] | None = None
    group: int = 0  # the group holding the value (0: the whole match)
    # Labels matched case-insensitively are slow to search for: skip the regex unless the
    # lowered text holds one of these. Patterns that start with a literal need no anchor.
    anchors: tuple[str, ...] = ()
    bounded: bool = False  # the match must not continue a longer token to its left
    lowered: bool = False  # a lowercase pattern run on the lowered text (much faster than IGNORECASE)


def real(value: str) -> bool:
    return not looks_like_placeholder(value) and value not in PUBLIC_EXAMPLES


def jwt(value: str) -> bool:
    """Three segments, the first two base64url JSON objects, the header naming an algorithm; the
    signature may be empty only in an unsecured token (`"alg": "none"`), which is still a bearer token."""
    parts = value.split(".")
    try:
        header, payload = (json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))) for part in parts[:2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    if not isinstance(header, dict) or "alg" not in header or not isinstance(payload, dict):
        return False
    signed = len(parts) > 2 and bool(parts[2])
    return (signed or str(header["alg"]).lower() == "none") and real(value)


def strong(value: str) -> bool:
    """A value a person or a generator chose as a secret, not a word or a variable name."""
    if not real(value) or len(value) < 6:
        return False
    words = re.split(r"[-_ ]", value)
    if len(words) >= 3 and all(w.isalpha() for w in words):  # a passphrase: correct-horse-battery-staple
        return True
    if re.fullmatch(r"[A-Za-z_][\w.]*[\[(]?", value) and not any(c.isdigit() for c in value):
        return False  # a variable, attribute or call in code: os.environ[, settings.DB_PASSWORD
    return entropy_classes(value) >= 2 and not value.isalpha()


def keyish(value: str) -> bool:
    """An unprefixed key: long, letters and digits mixed."""
    return real(value) and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
KEY_END = r"(?![A-Za-z0-9_\-])"  # no key character after the match (before it: `bounded`, checked in code)
