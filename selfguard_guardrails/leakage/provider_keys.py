"""Credentials with a fixed prefix or structure, per provider.

The formats are the providers' documented ones, as the open-source scanners (gitleaks,
detect-secrets, trufflehog) list them: prefix, alphabet and length. Lengths are exact where the
provider fixes them, so a token one character short or long (a truncated paste, a made-up
example) is not reported. Every value must also pass `secret_rules.real` (no placeholder, no
published example); values that have no prefix of their own are in `secrets.py`, after a label.
"""

from __future__ import annotations

import re

from .secret_rules import KEY_END, SecretRule, jwt, keyish, real

_AWS_KEY_ID = r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16}"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_ASSIGN = r"""[\w.\-]{0,24}?["'`]?\s*[:=]\s*["'`]?"""  # the rest of a label, then `: ` / `=`, quoted or not


def _rule(subtype: str, pattern: str, severity: str = "high", prefix: int = 4, **options: object) -> SecretRule:
    """A prefixed token: bounded on both sides, checked to be a real value."""
    options.setdefault("check", real)
    options.setdefault("bounded", True)
    return SecretRule(subtype, re.compile(pattern + KEY_END), severity, prefix, **options)  # type: ignore[arg-type]


def _labelled(subtype: str, label: str, value: str, anchors: tuple[str, ...], severity: str = "high") -> SecretRule:
    """A value without a prefix of its own, taken only after a label naming the provider
    (matched on the lowered text, so `value` is written in lower case)."""
    return SecretRule(subtype, re.compile(label + _ASSIGN + "(" + value + ")" + KEY_END), severity, 0,  # type: ignore[arg-type]
                      check=keyish, group=1, anchors=anchors, lowered=True)


PROVIDER_RULES: tuple[SecretRule, ...] = (
    SecretRule("private_key", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:\\n|\s)+[A-Za-z0-9+/=]{20,}"
        r"(?:(?:\\n|\s)+[A-Za-z0-9+/=]+)*(?:(?:\\n|\s)*-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?"),
        "critical", prefix=0),
    # cloud
    _rule("aws_access_key", _AWS_KEY_ID),
    _rule("azure_client_secret", r"[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}", "critical", prefix=0,
          anchors=("q~",)),
    SecretRule("gcp_service_account", re.compile(r'"private_key_id"\s*:\s*"([0-9a-f]{40})"'), "high", 0,
               check=real, group=1),
    _rule("google_api_key", r"AIza[0-9A-Za-z_\-]{35}"),
    _rule("google_oauth_secret", r"GOCSPX-[A-Za-z0-9_\-]{28}", "critical", prefix=7),
    _rule("google_oauth_token", r"ya29\.[0-9A-Za-z_\-]{30,}", prefix=5),
    _labelled("ibm_cloud_key", r"(?:ibm[_\-]?cloud|ibm|cloud)[_\-]?(?:iam[_\-]?)?(?:api[_\-]?)?(?:key|token|secret)",
              r"[a-z0-9_\-]{44}", ("ibm", "cloud"), "critical"),
    _labelled("softlayer_key", r"(?:softlayer|sl)[_\-]?(?:api[_\-]?)?(?:key|token|secret|pass(?:word)?)",
              r"[a-z0-9]{64}", ("softlayer", "sl_", "sl-", "slapi", "slkey"), "critical"),
    _rule("digitalocean_token", r"do[opr]_v1_[a-f0-9]{64}", "critical", prefix=7),
    _rule("heroku_key", r"HRKU-AA[0-9A-Za-z_\-]{58}", "critical", prefix=5),
    _labelled("heroku_key", r"heroku[_\-]?(?:api[_\-]?)?(?:key|token|secret)", _UUID, ("heroku",), "critical"),
    # code and package hosts
    _rule("github_token", r"(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})"),
    _rule("gitlab_token", r"(?:gl(?:pat|dt|rt|ft|ffct)-[0-9A-Za-z_\-]{20}|gl(?:pat|rt|dt)-[0-9A-Za-z_\-]{27,300}"
                          r"\.[0-9a-z]{2}[0-9a-z]{7}|glptt-[0-9a-f]{40}|GR1348941[0-9A-Za-z_\-]{20}|"
                          r"glcbt-[0-9A-Za-z]{1,5}_[0-9A-Za-z_\-]{20}|glimt-[0-9A-Za-z_\-]{25}|"
                          r"glagent-[0-9A-Za-z_\-]{50}|gloas-[0-9A-Za-z_\-]{64})", prefix=6,
          anchors=("glpat-", "gldt-", "glrt-", "glft-", "glffct-", "glptt-", "gr1348941", "glcbt-", "glimt-",
                   "glagent-", "gloas-")),
    _rule("npm_token", r"npm_[A-Za-z0-9]{36}"),
    SecretRule("npm_token", re.compile(r"_authtoken\s*=\s*[\"']?([A-Za-z0-9_\-]{30,})" + KEY_END, re.IGNORECASE),
               "high", 0, check=keyish, group=1, anchors=("_authtoken",)),
    _rule("pypi_token", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}", prefix=5),
    _rule("artifactory_key", r"(?:AKCp[A-Za-z0-9]{69}|cmVmdGtu[A-Za-z0-9]{56})", prefix=4,
          anchors=("akcp", "cmvmdgtu")),
    SecretRule("artifactory_key", re.compile(  # a reference token, AP + a hex digit: too short a prefix alone
        r"(?:artifactory|jfrog|x-jfrog-art-api)" + _ASSIGN + r"(ap[\da-f][a-z0-9]{8,})" + KEY_END), "high", 0,
        check=lambda v: v.startswith("AP") and keyish(v), group=1, anchors=("artifactory", "jfrog"), lowered=True),
    _rule("docker_hub_token", r"dckr_(?:pat|oat)_[A-Za-z0-9_\-]{27,32}", prefix=9),
    # chat and mail
    SecretRule("slack_webhook", re.compile(
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{6,}/[A-Z0-9]{6,}/[A-Za-z0-9]{16,}"),
        "high", prefix=30, check=lambda v: real(v.rsplit("/", 1)[-1])),
    _rule("slack_token", r"(?:xox[abposre]-(?:\d{6,}-){1,3}[A-Za-z0-9]{10,}|"
                         r"xapp-\d-[A-Z0-9]{9,}-\d{10,}-[a-f0-9]{32,})", prefix=5),
    _rule("discord_token", r"[MNO][A-Za-z0-9_\-]{23,25}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,38}", prefix=0,
          check=keyish),
    SecretRule("discord_webhook", re.compile(
        r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/[A-Za-z0-9_\-]{60,68}" + KEY_END),
        "high", prefix=33, check=lambda v: real(v.rsplit("/", 1)[-1])),
    # in Bot API URLs the token follows "/bot" directly
    _rule("telegram_bot_token", r"(?:(?<=/bot)|(?<![A-Za-z0-9_\-]))\d{8,10}:A[A-Za-z0-9_\-]{34}", prefix=0,
          anchors=(":a",), bounded=False),
    _rule("mailchimp_key", r"[0-9a-f]{32}-us\d{1,2}", prefix=0, anchors=("-us",)),
    _rule("sendgrid_key", r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}", prefix=3),
    _rule("twilio_key", r"AC[0-9a-f]{32}", prefix=2),
    _rule("twilio_key", r"SK[0-9a-f]{32}", prefix=2),
    # payments
    _rule("stripe_key", r"(?:(?:sk|rk)_live_[A-Za-z0-9]{20,247}|whsec_[A-Za-z0-9]{32,})", "critical", prefix=8,
          anchors=("_live_", "whsec_")),
    _rule("square_token", r"(?:sq0atp-[0-9A-Za-z_\-]{22}|sq0csp-[0-9A-Za-z_\-]{43}|EAAA[A-Za-z0-9_\-+=]{60})",
          "critical", prefix=7, anchors=("sq0atp-", "sq0csp-", "eaaa")),
    _rule("shopify_token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}", "critical", prefix=6),
    # AI providers
    _rule("anthropic_key", r"sk-ant-(?:api|admin|sid)\d{2}-[A-Za-z0-9_\-]{40,}", "critical", prefix=7),
    _rule("openai_key", r"sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|"
                        r"[A-Za-z0-9]{40,64})", "critical", prefix=3),
    _rule("huggingface_token", r"hf_[A-Za-z0-9]{34}", prefix=3),
    _rule("groq_key", r"gsk_[A-Za-z0-9]{52}", "critical", prefix=4),
    _rule("replicate_token", r"r8_[A-Za-z0-9]{37}", prefix=3),
    _rule("perplexity_key", r"pplx-[A-Za-z0-9]{48}", prefix=5),
    _rule("xai_key", r"xai-[A-Za-z0-9]{80}", "critical", prefix=4),
    # tokens by structure
    _rule("jwt", r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.(?:[A-Za-z0-9_\-]{16,})?", prefix=3, check=jwt),
)
