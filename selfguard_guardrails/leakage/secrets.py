"""Secrets: provider keys and tokens, private key blocks, JWTs, passwords, connection strings.

Provider keys are matched by their documented prefixes and lengths, then checked (no
placeholder, no published example). Values without a prefix (an AWS secret key, a password,
a generic API key) are only taken after a label that names them, and must look like a real
value (mixed character classes), which is what keeps advice about passwords from matching.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .findings import Severity
from .matches import Match, entropy_classes, looks_like_placeholder

# Published example values (vendor documentation); they are public, so never a leak.
PUBLIC_EXAMPLES = frozenset({
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
})


@dataclass(frozen=True)
class _Pattern:
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


def _real(value: str) -> bool:
    return not looks_like_placeholder(value) and value not in PUBLIC_EXAMPLES


def _jwt(value: str) -> bool:
    """Three segments, the first two base64url JSON objects, the header naming an algorithm."""
    try:
        header, payload = (json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
                           for part in value.split(".")[:2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header and isinstance(payload, dict) and _real(value)


def _strong(value: str) -> bool:
    """A value a person or a generator chose as a secret, not a word or a variable name."""
    if not _real(value) or len(value) < 6:
        return False
    words = re.split(r"[-_ ]", value)
    if len(words) >= 3 and all(w.isalpha() for w in words):  # a passphrase: correct-horse-battery-staple
        return True
    if re.fullmatch(r"[A-Za-z_][\w.]*[\[(]?", value) and not any(c.isdigit() for c in value):
        return False  # a variable, attribute or call in code: os.environ[, settings.DB_PASSWORD
    return entropy_classes(value) >= 2 and not value.isalpha()


def _keyish(value: str) -> bool:
    """An unprefixed key: long, letters and digits mixed."""
    return _real(value) and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_E = r"(?![A-Za-z0-9_\-])"  # no key character after the match (before it: `bounded`, checked in code)
_AWS_KEY_ID = r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16}"
_VALUE = r"""["'`]?([^\s"'`,;)]+)"""  # a value after a label, quoted or bare
_LABELLED_SECRET = r"(?:pass(?:word|wd|phrase|code)?|pwd|secret|token)"
# "password" in prose, in the languages a support or ops text is most often written in
_PASSWORD_WORDS = (r"(?:pass(?:word|phrase|code)|passwd|pwd|pin|passwort|kennwort|contraseña|contrasena|clave|"
                   r"mot de passe|senha|wachtwoord|has[lł]o|lösenord|salasana|parola d'ordine|heslo|пароль)")
_PASSWORD_ANCHORS = ("pass", "pwd", "pin", "wort", "contrase", "clave", "senha", "wachtwoord", "has", "lösen",
                     "salasana", "parola", "heslo", "пароль")
_IS = r"(?:is|was|are|reads|says|becomes|set to|ist|lautet|war|es|est|era|è|é|är|on|je|jest|zijn)"

PATTERNS: tuple[_Pattern, ...] = (
    _Pattern("private_key", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:\\n|\s)+[A-Za-z0-9+/=]{20,}"
        r"(?:(?:\\n|\s)+[A-Za-z0-9+/=]+)*(?:(?:\\n|\s)*-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?"),
        "critical", prefix=0),
    _Pattern("aws_access_key", re.compile(_AWS_KEY_ID + _E), "high", check=_real, bounded=True),
    _Pattern("aws_secret_key", re.compile(
        r"(?:aws_?secret_?access_?key|aws_?secret|secret_?access_?key|secret access key)[\"'`]?\s*[:=]?\s*[\"'`]?"
        r"(?<![A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"), "critical", prefix=0, group=1,
        check=lambda v: _real(v) and entropy_classes(v) >= 3, anchors=("secret",), lowered=True),
    _Pattern("github_token", re.compile(r"(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,255})" + _E),
             "high", check=_real, bounded=True),
    _Pattern("gitlab_token", re.compile(r"gl(?:pat|ptt|dt|rt|cbt|imt|agent|oas)-[A-Za-z0-9_\-]{20,}" + _E),
             "high", check=_real, bounded=True),
    _Pattern("slack_webhook", re.compile(
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{6,}/[A-Z0-9]{6,}/[A-Za-z0-9]{16,}"),
        "high", prefix=30, check=lambda v: _real(v.rsplit("/", 1)[-1])),
    _Pattern("slack_token", re.compile(r"xox[abposre]-(?:\d{6,}-){1,3}[A-Za-z0-9]{10,}" + _E), "high",
             prefix=5, check=_real, bounded=True),
    _Pattern("anthropic_key", re.compile(r"sk-ant-(?:api|admin|sid)\d{2}-[A-Za-z0-9_\-]{40,}" + _E), "critical",
             prefix=7, check=_real, bounded=True),
    _Pattern("openai_key", re.compile(
        r"sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|"
        r"[A-Za-z0-9]{40,64})" + _E), "critical", prefix=3, check=_real, bounded=True),
    _Pattern("stripe_key", re.compile(r"(?:(?:sk|rk)_live_[A-Za-z0-9]{20,247}|whsec_[A-Za-z0-9]{32,})" + _E),
             "critical", prefix=8, check=_real, bounded=True),
    _Pattern("google_api_key", re.compile(r"AIza[0-9A-Za-z_\-]{35}" + _E), "high", check=_real, bounded=True),
    _Pattern("huggingface_token", re.compile(r"hf_[A-Za-z0-9]{30,40}" + _E), "high", prefix=3, check=_real,
             bounded=True),
    _Pattern("npm_token", re.compile(r"npm_[A-Za-z0-9]{36}" + _E), "high", check=_real, bounded=True),
    _Pattern("sendgrid_key", re.compile(r"SG\.[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64}" + _E), "high",
             prefix=3, check=_real, bounded=True),
    _Pattern("twilio_key", re.compile(r"(?:AC|SK)[0-9a-f]{32}" + _E), "high", prefix=2, check=_real, bounded=True),
    _Pattern("twilio_key", re.compile(
        r"(?:auth[_ ]?token|api[_ ]?secret|twilio[_ ]?secret)[\"'`]?\s*(?:[:=]|\s)\s*[\"'`]?([A-Za-z0-9]{32})" + _E),
        "high", prefix=0, group=1, check=_keyish, anchors=("token", "secret"), lowered=True),
    _Pattern("twilio_key", re.compile(  # Client(account_sid, auth_token): the token right after the SID
        r"AC[0-9a-f]{32}[\"']?\s*,\s*[\"']?([0-9a-f]{32})" + _E), "high", prefix=0, group=1, check=_keyish),
    _Pattern("jwt", re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}" + _E),
             "high", prefix=3, check=_jwt, bounded=True),
    _Pattern("connection_string", re.compile(
        r"[a-z][a-z0-9+.\-]{1,20}://[^\s:/@\"'`]*:([^\s@/\"'`]{3,})@[A-Za-z0-9.\-_\[\]]+(?::\d+)?(?:/[^\s\"'`)]*)?"),
        "critical", prefix=0, anchors=("://",)),
    _Pattern("connection_string", re.compile(
        r"(?:jdbc:[a-z]+://[^\s\"'`]*?|(?:server|data source|host)=[^;\"'`\n]*;[^\"'`\n]*?)"
        r"(?:password|pwd)=([^;\s\"'`]+)[^\s\"'`]*"), "critical", prefix=0, anchors=("password=", "pwd="),
        lowered=True),
    _Pattern("connection_string", re.compile(
        r"DefaultEndpointsProtocol=https?;AccountName=[^;\s]+;AccountKey=([A-Za-z0-9+/=]{40,})[^\s\"'`]*"),
        "critical", prefix=0),
    _Pattern("generic_api_key", re.compile(
        r"(?:api[_-]?key|apikey|x-api-key|api[_-]?token|access[_-]?token|client[_-]?secret|secret[_-]?key)"
        r"[\"'`]?\s*[:=]\s*[\"'`]?([A-Za-z0-9_\-]{20,})" + _E), "high", prefix=0, group=1, check=_keyish,
        anchors=("api", "token", "secret"), lowered=True),
    _Pattern("password", re.compile(
        _LABELLED_SECRET + r"[a-z_\-]*[\"'`]?\s*[:=]\s*" + _VALUE), "high", prefix=0,
        group=1, check=_strong, anchors=("pass", "pwd", "secret", "token"), lowered=True),
    _Pattern("password", re.compile(
        r"\b" + _PASSWORD_WORDS + r"\b(?:\s+(?:for|of|to|on|de|du|des|für|van|para|do|da|del|per|för|dla)\s+"
        r"[^.,;:\n]{1,40}?)?\s+" + _IS + r"\s*:?\s*" + _VALUE), "high", prefix=0, group=1, check=_strong,
        anchors=_PASSWORD_ANCHORS, lowered=True),
    _Pattern("password", re.compile(
        r"\b(?:with|using|uses|use|enter|type)\s+(?:the\s+)?(?:[\w-]+\s+){0,2}"
        r"(?:password|passphrase|passcode)\s+" + _VALUE), "high", prefix=0, group=1, check=_strong,
        anchors=("pass",), lowered=True),
    _Pattern("password", re.compile(r"(?:\s-p|--password[= ])['\"]?([^\s'\"]{4,})"), "high", prefix=0, group=1,
             check=_strong, anchors=("-p",)),
    _Pattern("password", re.compile(r"\bmachine\s+\S+\s+login\s+\S+\s+password\s+(\S+)"), "high", prefix=0,
             group=1, check=_strong, anchors=("machine",), lowered=True),
)

_TRAILING = ".,;:!?)]}'\"`"


def find_secrets(text: str) -> Iterator[Match]:
    """Every secret in `text`, longest first where two patterns cover the same characters."""
    hits: list[Match] = []
    lowered = text.lower()
    same_offsets = len(lowered) == len(text)  # false for the rare characters that lowercase to two
    for pattern in PATTERNS:
        if pattern.anchors and not any(anchor in lowered for anchor in pattern.anchors):
            continue
        if not pattern.lowered:
            found_all = pattern.regex.finditer(text)
        elif same_offsets:
            found_all = pattern.regex.finditer(lowered)
        else:
            found_all = re.compile(pattern.regex.pattern, re.IGNORECASE).finditer(text)
        for found in found_all:
            if pattern.bounded and found.start() > 0 and text[found.start() - 1] in _KEY_CHARS:
                continue
            start, end = found.span(pattern.group)
            value = text[start:end]
            if pattern.subtype == "password":  # prose often ends the value with punctuation
                stripped = value.rstrip(_TRAILING)
                end -= len(value) - len(stripped)
                value = stripped
            if pattern.subtype == "connection_string" and not _strong_enough_url_password(text[slice(*found.span(1))]):
                continue
            if pattern.check is not None and not pattern.check(value):
                continue
            if pattern.subtype != "connection_string" and value in PUBLIC_EXAMPLES:
                continue
            hits.append(Match("secret", pattern.subtype, start, end, pattern.severity, value, pattern.prefix))
    return iter(_without_overlaps(hits))


# In a document the caller protects, "password Tr0ub4dor-9931" (no "is", no colon) is still the
# password: looser than the patterns for outputs, where it would match prose about passwords.
_SOURCE_PASSWORD = re.compile(r"\b" + _PASSWORD_WORDS + r"\b\s*[:=]?\s*" + _VALUE, re.IGNORECASE)


def find_source_passwords(text: str) -> Iterator[Match]:
    """Passwords written after the word alone, for reading protected texts (not outputs)."""
    for found in _SOURCE_PASSWORD.finditer(text):
        start, end = found.span(1)
        value = text[start:end].rstrip(_TRAILING)
        if _strong(value):
            yield Match("secret", "password", start, start + len(value), "high", value)


def _strong_enough_url_password(password: str) -> bool:
    """The credential part of a connection string is a value, not a template or a variable."""
    return (bool(password) and not looks_like_placeholder(password) and not password.startswith("$")
            and not re.fullmatch(r"[a-z_]+\)?", password))


def _without_overlaps(hits: list[Match]) -> list[Match]:
    """Keep the longest of overlapping hits (a password inside a connection string is one finding)."""
    kept: list[Match] = []
    for hit in sorted(hits, key=lambda h: (-(h.end - h.start), h.start)):
        if all(hit.end <= k.start or hit.start >= k.end for k in kept):
            kept.append(hit)
    return sorted(kept, key=lambda h: h.start)
