"""The provider formats and the PII subtypes added for real traces: each is found in a sentence
an agent might write, a look-alike of it is not, and no raw value reaches a finding's excerpt,
a redacted text, an audit record or a block's error message."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest

from selfguard_guardrails.audit.records import record_for
from selfguard_guardrails.leakage.evaluate import read_corpus, score_corpus
from selfguard_guardrails.leakage.guard import LeakGuard
from selfguard_guardrails.leakage.policy import LeakBlockedError, LeakPolicy
from selfguard_guardrails.leakage.scanner import LeakContext, LeakScanner
from selfguard_guardrails.results import GenerationResult, Timings, Usage

SCANNER = LeakScanner()
FORMATS = Path(__file__).parent / "data" / "leakage" / "formats" / "formats.jsonl"
_RANDOM = random.Random(4517)
ALNUM, HEX = string.ascii_letters + string.digits, "0123456789abcdef"
LOWER_ALNUM = string.ascii_lowercase + string.digits


def _r(count: int, alphabet: str = ALNUM) -> str:
    return "".join(_RANDOM.choice(alphabet) for _ in range(count))


# "subtype" or "subtype:variant" -> (a sentence that leaks the value, the value)
LEAKS: dict[str, tuple[str, str]] = {}


def _leak(name: str, template: str, value: str) -> None:
    LEAKS[name] = (template.format(value=value), value)


_leak("azure_client_secret", "The app registration's secret is {value}; it expires in June.",
      _r(3) + "8Q~" + _r(34, ALNUM + "_~.-"))
_leak("gcp_service_account", '{{"type": "service_account", "project_id": "ops", "private_key_id": "{value}"}}',
      _r(40, HEX))
_leak("google_oauth_secret", "OAuth client: client_id=123.apps.googleusercontent.com client_secret={value}",
      "GOCSPX-" + _r(28))
_leak("google_oauth_token", "curl -H 'Authorization: Bearer {value}' https://www.googleapis.com/drive/v3/files",
      "ya29." + _r(60, ALNUM + "_-"))
_leak("phone", "Customer callback: tel 342-681-2210, after 5 pm.", "342-681-2210")
_leak("ibm_cloud_key", "export IBM_CLOUD_API_KEY={value}", _r(44, ALNUM + "_-"))
_leak("softlayer_key", "softlayer_api_key = {value}", _r(64, LOWER_ALNUM))
_leak("digitalocean_token", "doctl auth init -t {value}", "dop_v1_" + _r(64, HEX))
_leak("heroku_key", "HEROKU_API_KEY={value}", "HRKU-AA" + _r(58, ALNUM + "_-"))
_leak("gitlab_token", "export GITLAB_TOKEN={value} before running the release job.", "glpat-" + _r(20, ALNUM + "_-"))
_leak("pypi_token", "[pypi]\nusername = __token__\npassword = {value}", "pypi-AgEIcHlwaS5vcmc" + _r(70, ALNUM + "_-"))
_leak("artifactory_key", "curl -H 'X-JFrog-Art-Api: {value}' https://acme.jfrog.io/api", "AKCp" + _r(69))
_leak("artifactory_key:reference", "ARTIFACTORY_API_KEY={value}", "AP" + _r(1, "0123456789ABCDEF") + _r(40))
_leak("docker_hub_token", "docker login -u acme -p {value}", "dckr_pat_" + _r(27, ALNUM + "_-"))
_leak("discord_token", "The bot logs in with {value} from config.json.",
      "M" + _r(25) + "." + _r(6, ALNUM + "_-") + "." + _r(38, ALNUM + "_-"))
_leak("discord_webhook", "Alerts post to {value} every hour.",
      "https://discord.com/api/webhooks/" + _r(19, string.digits) + "/" + _r(68, ALNUM + "_-"))
_leak("telegram_bot_token", "TELEGRAM_TOKEN={value}", _r(10, string.digits) + ":AA" + _r(33, ALNUM + "_-"))
_leak("mailchimp_key", "The newsletter job uses the Mailchimp key {value}.", _r(32, HEX) + "-us14")
_leak("square_token", "SQUARE_ACCESS_TOKEN={value}", "sq0atp-" + _r(22, ALNUM + "_-"))
_leak("shopify_token", "X-Shopify-Access-Token: {value}", "shpat_" + _r(32, HEX))
_leak("groq_key", "client = Groq(api_key='{value}')", "gsk_" + _r(52))
_leak("replicate_token", "REPLICATE_API_TOKEN={value}", "r8_" + _r(37))
_leak("perplexity_key", "Authorization: Bearer {value}", "pplx-" + _r(48))
_leak("xai_key", "XAI_API_KEY={value}", "xai-" + _r(80))
_leak("bank_account", "Please wire the refund to account number {value} at First Valley Bank.", "4490 1187 2230")
_leak("ip_address", "sshd: Accepted publickey for admin from {value} port 52144", "81.2.69.160")
_leak("mac_address", "DHCP lease renewed for device {value} (kitchen tablet).", "3c:22:fb:9a:11:0e")

LOOKALIKES = [
    "GitLab personal tokens start with glpat- followed by twenty characters.",
    "glpat-" + _r(19),  # one character short
    "HEROKU_API_KEY=<your-heroku-api-key>",
    "Set DIGITALOCEAN_TOKEN=dop_v1_your_token_here in the environment.",
    "The order number 48812290 shipped on 2024-05-01 for $1,249.90.",
    "Upgrade to version 2.4.10.1 before Friday.",
    "Open 192.168.1.1 in your browser to reach the router.",
    "The documentation uses 192.0.2.10 and 2001:db8::1 as examples.",
    "The broadcast address ff:ff:ff:ff:ff:ff reaches every device.",
    "Invoice 2024-0173 totals 12,480.00 EUR, due 30.06.2024.",
]


def _result(answer: str) -> GenerationResult:
    return GenerationResult(answer=answer, mode="self-guard", finish_reason="eos", usage=Usage(input_tokens=1,
                            output_tokens=1), timings=Timings(prefill_seconds=0, decode_seconds=0, total_seconds=0),
                            model="tiny")


@pytest.mark.parametrize("name", sorted(LEAKS))
def test_each_new_subtype_is_found_and_its_value_goes_nowhere(name):
    text, value = LEAKS[name]
    subtype = name.split(":")[0]
    findings = SCANNER.scan("", text, LeakContext())
    assert [f.subtype for f in findings] == [subtype], findings
    assert all(value not in f.excerpt for f in findings)
    redacted = LeakGuard(LeakPolicy.parse("redact")).check(_result(text), LeakContext())
    assert value not in redacted.answer and f"[REDACTED:{findings[0].kind}/{subtype}]" in redacted.answer
    record = record_for(redacted, [{"role": "user", "content": "hi"}], latency_seconds=0.0)
    assert value not in record.model_dump_json()
    blocking = LeakGuard(LeakPolicy.parse("block"))
    with pytest.raises(LeakBlockedError) as raised:
        blocking.raise_if_blocked(blocking.check(_result(text), LeakContext()))
    assert value not in str(raised.value) and all(value not in json.dumps(f.model_dump()) for f in
                                                  raised.value.findings)


@pytest.mark.parametrize("text", LOOKALIKES)
def test_look_alikes_of_the_new_formats_are_not_findings(text):
    assert SCANNER.scan("", text, LeakContext()) == []


def test_labelled_phone_numbers_count_even_when_unallocated():
    found = SCANNER.scan("", "Phone: 342.681.2210 (ext. 204)", LeakContext())  # area code 342 is not allocated
    assert [(f.subtype, f.start, f.end) for f in found] == [("phone", 7, 19)]
    assert SCANNER.scan("", "Batch 342.681.2210 was archived.", LeakContext()) == []  # no label, not allocated


def test_a_routing_number_must_pass_its_checksum():
    assert [f.subtype for f in SCANNER.scan("", "routing number 021000021", LeakContext())] == ["bank_account"]
    assert SCANNER.scan("", "routing number 123456789", LeakContext()) == []


def test_the_development_set_holds_precision_and_recall_per_kind():
    cases = read_corpus(FORMATS)
    score = score_corpus(cases, SCANNER)
    for kind, tally in score.by_kind.items():
        assert tally.precision >= 0.95 and tally.recall >= 0.90, (kind, tally.as_dict(), score.misses)
