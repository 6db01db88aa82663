"""Secrets: provider keys and tokens (`provider_keys.py`), private key blocks, JWTs, and the
values that have no prefix of their own: passwords, connection strings, generic API keys.

Provider keys are matched by their documented prefixes and lengths, then checked (no
placeholder, no published example). Values without a prefix (an AWS secret key, a password,
a generic API key) are only taken after a label that names them, and must look like a real
value (mixed character classes), which is what keeps advice about passwords from matching.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .matches import Match, entropy_classes, looks_like_placeholder
from .provider_keys import PROVIDER_RULES
from .secret_rules import KEY_CHARS, KEY_END, PUBLIC_EXAMPLES, SecretRule, keyish, real, strong

_VALUE = r"""["'`]?([^\s"'`,;)]+)"""  # a value after a label, quoted or bare
_LABELLED_SECRET = r"(?:pass(?:word|wd|phrase|code)?|pwd|secret|token)"
# "password" in prose, in the languages a support or ops text is most often written in
_PASSWORD_WORDS = (r"(?:pass(?:word|phrase|code)|passwd|pwd|pin|passwort|kennwort|contraseña|contrasena|clave|"
                   r"mot de passe|senha|wachtwoord|has[lł]o|lösenord|salasana|parola d'ordine|heslo|пароль)")
_PASSWORD_ANCHORS = ("pass", "pwd", "pin", "wort", "contrase", "clave", "senha", "wachtwoord", "has", "lösen",
                     "salasana", "parola", "heslo", "пароль")
_IS = r"(?:is|was|are|reads|says|becomes|set to|ist|lautet|war|es|est|era|è|é|är|on|je|jest|zijn)"

LABELLED_RULES: tuple[SecretRule, ...] = (
    SecretRule("aws_secret_key", re.compile(
        r"(?:aws_?secret_?access_?key|aws_?secret|secret_?access_?key|secret access key)[\"'`]?\s*[:=]?\s*[\"'`]?"
        r"(?<![A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"), "critical", prefix=0, group=1,
        check=lambda v: real(v) and entropy_classes(v) >= 3, anchors=("secret",), lowered=True),
    SecretRule("twilio_key", re.compile(
        r"(?:auth[_ ]?token|api[_ ]?secret|twilio[_ ]?secret)[\"'`]?\s*(?:[:=]|\s)\s*[\"'`]?([A-Za-z0-9]{32})"
        + KEY_END),
        "high", prefix=0, group=1, check=keyish, anchors=("token", "secret"), lowered=True),
    SecretRule("twilio_key", re.compile(  # Client(account_sid, auth_token): the token right after the SID
        r"AC[0-9a-f]{32}[\"']?\s*,\s*[\"']?([0-9a-f]{32})" + KEY_END), "high", prefix=0, group=1, check=keyish),
    SecretRule("connection_string", re.compile(
        r"[a-z][a-z0-9+.\-]{1,20}://[^\s:/@\"'`]*:([^\s@/\"'`]{3,})@[A-Za-z0-9.\-_\[\]]+(?::\d+)?(?:/[^\s\"'`)]*)?"),
        "critical", prefix=0, anchors=("://",)),
    SecretRule("connection_string", re.compile(
        r"(?:jdbc:[a-z]+://[^\s\"'`]*?|(?:server|data source|host)=[^;\"'`\n]*;[^\"'`\n]*?)"
        r"(?:password|pwd)=([^;\s\"'`]+)[^\s\"'`]*"), "critical", prefix=0, anchors=("password=", "pwd="),
        lowered=True),
    SecretRule("connection_string", re.compile(
        r"DefaultEndpointsProtocol=https?;AccountName=[^;\s]+;AccountKey=([A-Za-z0-9+/=]{40,})[^\s\"'`]*"),
        "critical", prefix=0),
    SecretRule("generic_api_key", re.compile(
        r"(?:api[_-]?key|apikey|x-api-key|api[_-]?token|access[_-]?token|client[_-]?secret|secret[_-]?key)"
        r"[\"'`]?\s*[:=]\s*[\"'`]?([A-Za-z0-9_\-]{20,})" + KEY_END), "high", prefix=0, group=1, check=keyish,
        anchors=("api", "token", "secret"), lowered=True),
    SecretRule("generic_api_key", re.compile(  # a command line's flag: ibmcloud login --apikey KEY
        r"(?<![\w\-])--?(?:api[_-]?key|apikey|api[_-]?token|access[_-]?token|token)[= ]\s*[\"']?([A-Za-z0-9_\-]{20,})"
        + KEY_END), "high", prefix=0, group=1, check=keyish, anchors=("--", " -"), lowered=True),
    SecretRule("password", re.compile(
        _LABELLED_SECRET + r"[a-z_\-]*[\"'`]?\s*[:=]\s*" + _VALUE), "high", prefix=0,
        group=1, check=strong, anchors=("pass", "pwd", "secret", "token"), lowered=True),
    SecretRule("password", re.compile(
        r"\b" + _PASSWORD_WORDS + r"\b(?:\s+(?:for|of|to|on|de|du|des|für|van|para|do|da|del|per|för|dla)\s+"
        r"[^.,;:\n]{1,40}?)?\s+" + _IS + r"\s*:?\s*" + _VALUE), "high", prefix=0, group=1, check=strong,
        anchors=_PASSWORD_ANCHORS, lowered=True),
    SecretRule("password", re.compile(
        r"\b(?:with|using|uses|use|enter|type)\s+(?:the\s+)?(?:[\w-]+\s+){0,2}"
        r"(?:password|passphrase|passcode)\s+" + _VALUE), "high", prefix=0, group=1, check=strong,
        anchors=("pass",), lowered=True),
    SecretRule("password", re.compile(r"(?:\s-p|--password[= ])['\"]?([^\s'\"]{4,})"), "high", prefix=0, group=1,
               check=strong, anchors=("-p",)),
    SecretRule("password", re.compile(r"\bmachine\s+\S+\s+login\s+\S+\s+password\s+(\S+)"), "high", prefix=0,
               group=1, check=strong, anchors=("machine",), lowered=True),
)
RULES = (*PROVIDER_RULES, *LABELLED_RULES)


_TRAILING = ".,;:!?)]}'\"`"


def find_secrets(text: str) -> Iterator[Match]:
    """Every secret in `text`, longest first where two patterns cover the same characters."""
    hits: list[Match] = []
    lowered = text.lower()
    same_offsets = len(lowered) == len(text)  # false for the rare characters that lowercase to two
    for pattern in RULES:
        if pattern.anchors and not any(anchor in lowered for anchor in pattern.anchors):
            continue
        if not pattern.lowered:
            found_all = pattern.regex.finditer(text)
        elif same_offsets:
            found_all = pattern.regex.finditer(lowered)
        else:
            found_all = re.compile(pattern.regex.pattern, re.IGNORECASE).finditer(text)
        for found in found_all:
            if pattern.bounded and found.start() > 0 and text[found.start() - 1] in KEY_CHARS:
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
        if strong(value):
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
