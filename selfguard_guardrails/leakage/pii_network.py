"""IP and MAC addresses: what identifies a person's machine or a private network in a trace.

Addresses are parsed by the standard `ipaddress` module, so a dotted version number with an
octet above 255 never counts. What is not an identifier is left alone: loopback, unspecified,
multicast, broadcast, netmasks and the documentation ranges (RFC 5737, RFC 3849); a private
(RFC 1918) or link-local address counts only after a word that names a host or an address:
it identifies no person, but it maps a private network; "open 192.168.1.1 in your browser" is
router advice, not a leak. A four-part number right after "version", "v", "release",
"section", "§" ... is a version or a section number. MAC addresses: six hexadecimal pairs (or
Cisco's three quads), not all-zero, broadcast, or the documentation block 00-00-5E-00-53.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from .matches import Match

# Patterns start with the address itself (a look-behind first would be tried at every position);
# what may stand around an address is checked in code.
_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?:/\d{1,2})?")
_IPV6 = re.compile(r"(?:[0-9A-Fa-f]{1,4}:){2,7}:?[0-9A-Fa-f]{0,4}(?:::?[0-9A-Fa-f]{1,4})*")
_MAC = re.compile(r"[0-9A-Fa-f]{2}([:\-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}|"
                  r"[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}")
# a dotted number after these is a version or a section, not an address
_NUMBERING = re.compile(r"(?i)(?:\bversion|\bver\.?|\bv|\brelease|\bbuild|\bfirmware|\bsection|\bsections|§|"
                        r"\bclause|\bchapter|\bfigure|\btable|\bstep|\bitem|\bparagraph|\boid)\s*$")
_HOST_WORDS = re.compile(r"(?i)\b(?:ip|ips|ipv4|ipv6|address|addr|host|hostname|server|node|client|peer|gateway|"
                         r"router|device|machine|instance|vm|from|source|src|dst|destination|login|connected|"
                         r"logged|remote)\b")
_DOCUMENTATION = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
                                                         "2001:db8::/32"))
_NOT_MACS = {"000000000000", "ffffffffffff"}


def _stands_alone(text: str, start: int, end: int, inside: str) -> bool:
    """No letter, digit, `_` or one of `inside` right before or after the address (a dotted
    number followed by ".5" is longer than an address)."""
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    following = text[end + 1] if end + 1 < len(text) else " "
    return not (before.isalnum() or before == "_" or before in inside or after.isalnum() or after == "_"
                or (after in inside and (after != "." or following.isdigit())))


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("/")[0])
    except ValueError:
        return None


def _identifies(address: ipaddress.IPv4Address | ipaddress.IPv6Address, before: str) -> bool:
    if (address.is_loopback or address.is_unspecified or address.is_multicast or address.is_reserved
            or any(address in net for net in _DOCUMENTATION)):
        return False
    if isinstance(address, ipaddress.IPv4Address) and str(address).startswith("255."):
        return False  # a netmask
    if address.is_private or address.is_link_local:
        return bool(_HOST_WORDS.search(before))
    return True


def find_network_addresses(text: str) -> Iterator[Match]:
    """IPv4, IPv6 and MAC addresses that identify a machine (see the module docstring)."""
    if text.count(".") >= 3:
        for found in _IPV4.finditer(text):
            if not _stands_alone(text, found.start(), found.end(), ".-"):
                continue
            address = _address(found.group())
            before = text[max(0, found.start() - 40):found.start()]
            if address is None or _NUMBERING.search(before) or not _identifies(address, before):
                continue
            yield Match("pii", "ip_address", found.start(), found.end(), "medium", str(address))
    if "::" in text or text.count(":") >= 5:
        for found in _IPV6.finditer(text):
            address = _address(found.group())
            if address is None or found.group().count(":") < 2 or not _stands_alone(
                    text, found.start(), found.end(), ":."):
                continue
            if _identifies(address, text[max(0, found.start() - 40):found.start()]):
                yield Match("pii", "ip_address", found.start(), found.end(), "medium", str(address))
    if text.count(":") < 5 and text.count("-") < 5 and text.count(".") < 2:
        return
    for found in _MAC.finditer(text):
        if not _stands_alone(text, found.start(), found.end(), ":-."):
            continue
        compact = re.sub(r"[^0-9a-f]", "", found.group().lower())
        if compact in _NOT_MACS or compact.startswith("00005e0053"):
            continue
        yield Match("pii", "mac_address", found.start(), found.end(), "low", compact)
