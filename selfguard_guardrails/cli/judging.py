"""Options that `eval` and `calibrate` share: the refusal judge and the --where row filters.

Both are checked here, before any model loads, so a typo fails at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InvalidSettingError

if TYPE_CHECKING:
    from ..evaluation.runner import Judge


def parse_where(pairs: list[str]) -> dict[str, str]:
    """``["COLUMN=VALUE", ...]`` (the --where options) -> {column: value}."""
    result = {}
    for pair in pairs:
        column, sep, value = pair.partition("=")
        if not sep or not column:
            raise InvalidSettingError(f"--where {pair!r} is not COLUMN=VALUE, e.g. FunctionalCategory=standard.")
        result[column] = value
    return result


def build_judge(spec: str) -> Judge:
    """The judge named on the command line, built (and so checked) before any model loads."""
    from ..evaluation.runner import keyword_judge

    if spec == "keyword":
        return keyword_judge
    kind, _, target = spec.partition(":")
    if kind != "llm" or not target:
        raise InvalidSettingError(f"--judge {spec!r} is unknown: use keyword or llm:MODULE:ATTR.")
    from ..integrations.langchain.llm_judge import LLMRefusalJudge, load_chat_model

    return LLMRefusalJudge(load_chat_model(target))
