"""Personal data: e-mail addresses, phone numbers, payment cards, IBANs, national ID numbers,
bank account numbers (`pii_accounts.py`), IP and MAC addresses (`pii_network.py`).

Candidates are found with patterns; what has a checksum is then checked by `python-stdnum`
(Luhn, ISO 13616 mod 97, national ID rules) and phone numbers by `phonenumbers` (Google's
libphonenumber data), so digit runs that merely look right (order numbers, ISBNs, dates,
version strings) are dropped. Published test and documentation values are never leaks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import phonenumbers
from stdnum import iban, luhn
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

from .matches import Match
from .pii_accounts import find_bank_accounts
from .pii_network import find_network_addresses

# Test card numbers published by payment processors, and documentation IBANs.
TEST_CARDS = frozenset({
    "4242424242424242", "4111111111111111", "4012888888881881", "4000056655665556", "4000000000000002",
    "4000000000009995", "4000000000000077", "5555555555554444", "5200828282828210", "5105105105105100",
    "2223003122003222", "378282246310005", "371449635398431", "378734493671000", "6011111111111117",
    "6011000990139424", "3056930009020004", "36227206271667", "3566002020360505", "6200000000000005",
    "4222222222222", "4917610000000000", "4988438843884305", "5454545454545454", "4007000000027",
})
DOC_IBANS = frozenset({"DE89370400440532013000", "GB82WEST12345698765432", "GB29NWBK60161331926819",
                       "FR1420041010050500013M02606", "NL91ABNA0417164300"})
DOC_DOMAINS = re.compile(r"(?:^|\.)(?:example|test|invalid|localhost)$|^example\.(?:com|org|net|edu)$|"
                         r"^domain\.tld$|\.tld$")

_EMAIL = re.compile(r"(?<![\w.%+\-/])[A-Za-z0-9][A-Za-z0-9._%+\-]*@(?P<domain>[A-Za-z0-9](?:[A-Za-z0-9\-]*"
                    r"[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24})(?![\w@\-])")
_CARD = re.compile(r"(?<![\d\-])(?:\d[ \-]?){12,18}\d(?![\d\-])")
_IBAN = re.compile(r"(?<![A-Z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Z0-9])")
_PHONE = re.compile(r"(?:(?<=:)(?=\+)|(?<![\w+.\-/:]))"  # after a colon only with a country code (vCard TEL:+1...)
                    r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d{1,8}(?:[ .\-]\d{1,8}){1,5}"
                    r"(?![\w\-/:]|[.,]\d)|(?<![\w+])\+\d{7,15}(?!\w)")
_TRUNK_REGIONS = ("GB", "DE", "FR", "NL", "IT", "IN", "AU", "JP", "BR", "IE", "SE", "CH", "AT", "BE", "ZA", "NZ",
                  "TR", "KR", "CN", "AR", "IL", "FI")
_NANP = re.compile(r"\(?[2-9]\d{2}\)?[ .\-]?[2-9]\d{2}[ .\-]?\d{4}")
_PHONE_WORDS = re.compile(r"(?i)\b(?:phone|tel|telephone|mobile|cell|call|text|whatsapp|number|fax|contact|"
                          r"reach|ring|ruf|anrufen|llama|appel)\w*")
_NOT_PHONE = re.compile(r"^\d{4}-\d{2}-\d{2}|^\d{1,2}[./]\d{1,2}[./]\d{2,4}$|^\d{1,3}(?:\.\d{1,3}){3}$|"
                        r"^\d{5}-\d{4}$|^\d{1,3}(?:,\d{3})+$|^\d{3}-\d{2}-\d{4}$")  # ISO date, date, IP, ZIP+4, SSN
_SSN = re.compile(r"(?<![\d\-])\d{3}-\d{2}-\d{4}(?![\d\-])")
_NINO = re.compile(r"(?<![A-Z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ|QQ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2}"
                   r" ?[A-D](?![A-Za-z0-9])")
_DNI_NIE = re.compile(r"(?<![A-Z0-9])(?:\d{8}|[XYZ]\d{7})-?[A-Z](?![A-Za-z0-9])")
_CF = re.compile(r"(?<![A-Z0-9])[A-Z]{6}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z](?![A-Za-z0-9])")
_NINE_DIGITS = re.compile(r"(?<![\d\-])\d{9}(?![\d\-])")
_AADHAAR = re.compile(r"(?<![\d\-])(?<!\d )[2-9]\d{3} ?\d{4} ?\d{4}(?! ?\d)")
_NIR = re.compile(r"(?<!\d)[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?!\d)")
_TWO_DIGITS = re.compile(r"\d\d")
_DIGITISH = re.compile(r"\d(?:[ .\-()/]?\d){6}")  # 7 digits, at most one separator between two
_SIX_DIGITS = re.compile(r"\d(?:[ \-]?\d){5,}")  # where a bank account number can be
_ID_WORDS = {
    "ssn": re.compile(r"(?i)\b(?:ssn|social security)\b"),
    "bsn": re.compile(r"(?i)\b(?:bsn|burgerservicenummer|citizen service number)\b"),
    "aadhaar": re.compile(r"(?i)\baadhaa?r\b"),
}


def _context(text: str, start: int, width: int = 60) -> str:
    return text[max(0, start - width):start]


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def _emails(text: str) -> Iterator[Match]:
    for found in _EMAIL.finditer(text):
        domain = found.group("domain").lower()
        before = text[max(0, found.start() - 24):found.start()].lower()
        if DOC_DOMAINS.search(domain) or "ssh " in before or "git clone" in before:
            continue
        if before.endswith(":") and not before.endswith("mailto:"):  # user:password@host in a URL
            continue
        yield Match("pii", "email", found.start(), found.end(), "medium", found.group().lower())


def _digit_windows(text: str, margin: int = 24, run: re.Pattern[str] | None = None) -> list[tuple[int, int]]:
    """Stretches of text around runs of 7+ digits (or `run`): the only places a card, phone or
    ID number can be, so their patterns need not search the rest."""
    windows: list[tuple[int, int]] = []
    for found in (run or _DIGITISH).finditer(text):
        start, end = max(0, found.start() - margin), min(len(text), found.end() + margin)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(end, windows[-1][1]))
        else:
            windows.append((start, end))
    return windows


def _search(regex: re.Pattern[str], text: str, windows: list[tuple[int, int]]) -> Iterator[re.Match[str]]:
    """Matches inside the windows (the text is not sliced, so look-behinds still see before them)."""
    for start, end in windows:
        yield from regex.finditer(text, start, end)


def _cards(text: str, windows: list[tuple[int, int]]) -> Iterator[Match]:
    for found in _search(_CARD, text, windows):
        number = _digits(found.group())
        if not 13 <= len(number) <= 19 or number in TEST_CARDS or not luhn.is_valid(number):
            continue
        if not _card_issuer(number) or len(set(number)) <= 2:
            continue
        yield Match("pii", "payment_card", found.start(), found.end(), "critical", number)


def _card_issuer(number: str) -> bool:
    """A real issuer range (IIN) with a length that issuer uses."""
    length, two, four = len(number), int(number[:2]), int(number[:4])
    return ((number[0] == "4" and length in (13, 16, 19)) or (51 <= two <= 55 and length == 16)
            or (2221 <= four <= 2720 and length == 16) or (two in (34, 37) and length == 15)
            or ((four == 6011 or two == 65 or 644 <= int(number[:3]) <= 649) and 16 <= length <= 19)
            or (3528 <= four <= 3589 and 16 <= length <= 19) or ((300 <= int(number[:3]) <= 305 or two in (36, 38))
                                                                and 14 <= length <= 19)
            or (two == 62 and 16 <= length <= 19) or (two in (50, 56, 57, 58, 63, 67) and 12 <= length <= 19))


def _ibans(text: str, windows: list[tuple[int, int]]) -> Iterator[Match]:
    for found in _search(_IBAN, text, windows):
        compact = found.group().replace(" ", "")
        if compact in DOC_IBANS or not iban.is_valid(compact):
            continue
        yield Match("pii", "iban", found.start(), found.end(), "high", compact, prefix=2)


def _phones(text: str, windows: list[tuple[int, int]], taken: list[tuple[int, int]]) -> Iterator[Match]:
    for found in _search(_PHONE, text, windows):
        value = found.group().strip()
        digits = _digits(value)
        if not 7 <= len(digits) <= 15 or _NOT_PHONE.search(value) or _overlaps(found.span(), taken):
            continue
        separated = value.startswith("+") or "(" in value or re.search(r"\d[ .\-]\d", value)
        if not separated and not _PHONE_WORDS.search(_context(text, found.start(), 40)):
            continue
        number = _phone_number(value)
        if number is None and _PHONE_WORDS.search(_context(text, found.start(), 40)):
            number = _written_like_a_phone(value)  # labelled: a made-up or unallocated number still is one
        if number is None or _fictional(number):
            continue
        key = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        yield Match("pii", "phone", found.start(), found.start() + len(value), "medium", key)


def _phone_number(value: str) -> phonenumbers.PhoneNumber | None:
    """A valid number with its country code, or in a national format a reader would dial as is:
    a trunk prefix 0 (most of the world) or the North American 3-3-4 shape. Other digit groups
    without a country code (ID numbers, references) are not taken as phone numbers."""
    if value.startswith("+"):
        regions: tuple[str | None, ...] = (None,)
    elif value.lstrip("(").startswith("0"):
        regions = _TRUNK_REGIONS
    elif _NANP.fullmatch(value):
        regions = ("US", "CA")
    else:
        return None
    for region in regions:
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return number
    return None


def _written_like_a_phone(value: str) -> phonenumbers.PhoneNumber | None:
    """A number written the way phone numbers are (North American 3-3-4 with separators, or with a
    country code) that libphonenumber calls possible but not allocated."""
    if value.startswith("+"):
        region = None
    elif _NANP.fullmatch(value) and re.search(r"\d[ .\-)]", value):
        region = "US"
    else:
        return None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_possible_number(number) else None


def _fictional(number: phonenumbers.PhoneNumber) -> bool:
    """Numbers reserved for fiction: NANP 555-0100 to 555-0199, Ofcom's drama ranges (UK)."""
    national = str(number.national_number)
    if number.country_code == 1:
        return national[3:6] == "555" and national[6:8] == "01"
    if number.country_code == 44:
        drama = ("2079460", "7700900", "1134960", "1144960", "1154960", "1164960", "1174960", "1184960",
                 "1214960", "1314960", "1414960", "1514960", "1614960", "1914980", "2896496", "2920180",
                 "1632960", "8081570", "9098790")
        return national.startswith(drama)
    if number.country_code == 61:
        return national.startswith(("491570", "255550", "355550", "755550", "855550"))
    return False


def _national_ids(text: str, windows: list[tuple[int, int]], near_digits: list[tuple[int, int]]) -> Iterator[Match]:
    """A NINO or a codice fiscale near two digits in a row; the other IDs hold a run of 7 digits,
    so only in `windows`."""
    checks = ((_NINO, None, None, near_digits), (_CF, codicefiscale.is_valid, None, near_digits),
              (_SSN, ssn.is_valid, None, windows), (_DNI_NIE, _dni_or_nie, None, windows),
              (_NINE_DIGITS, ssn.is_valid, "ssn", windows), (_NINE_DIGITS, bsn.is_valid, "bsn", windows),
              (_AADHAAR, aadhaar.is_valid, None, windows), (_NIR, nir.is_valid, None, windows))
    for regex, valid, needs_word, where in checks:
        for found in _search(regex, text, where):
            value = found.group()
            if needs_word and not _ID_WORDS[needs_word].search(_context(text, found.start(), 80)):
                continue
            if regex is _AADHAAR and " " not in value and not _ID_WORDS["aadhaar"].search(
                    _context(text, found.start(), 80)):
                continue
            if valid is None or valid(value.replace(" ", "")):  # NINOs have no checksum: the pattern is the rule
                yield Match("pii", "national_id", found.start(), found.end(), "critical", value.replace(" ", ""))


def _dni_or_nie(value: str) -> bool:
    compact = value.replace("-", "")
    return dni.is_valid(compact) if compact[0].isdigit() else nie.is_valid(compact)


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in taken)


def find_pii(text: str) -> Iterator[Match]:
    """Every PII item in `text`. Checksummed kinds claim their digits first, so a card or an ID
    number is never also reported as a phone number; nor are the digits of an account-number
    shaped string whose checksum failed."""
    windows = _digit_windows(text)
    near_digits = _digit_windows(text, 34, _TWO_DIGITS)  # an IBAN, a NINO, a codice fiscale hold two digits
    checked = [*_cards(text, windows), *_ibans(text, near_digits), *_national_ids(text, windows, near_digits),
               *find_bank_accounts(text, _digit_windows(text, 0, _SIX_DIGITS) if near_digits else [])]
    taken = [(m.start, m.end) for m in checked] + [found.span() for found in _search(_IBAN, text, near_digits)]
    found = [*(_emails(text) if "@" in text else ()), *checked]
    found += [m for m in _phones(text, windows, taken)
              if not _overlaps((m.start, m.end), [(e.start, e.end) for e in found])]
    found += [m for m in find_network_addresses(text)
              if not _overlaps((m.start, m.end), [(e.start, e.end) for e in found])]
    return iter(sorted(_unique(found), key=lambda m: m.start))


def _unique(matches: list[Match]) -> list[Match]:
    kept: list[Match] = []
    for match in sorted(matches, key=lambda m: (m.start, -(m.end - m.start))):
        if not kept or match.start >= kept[-1].end:
            kept.append(match)
    return kept
