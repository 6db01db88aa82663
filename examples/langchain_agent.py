"""An agent loop with two tools on the embedded model: a plain LangChain tool loop.

    python examples/langchain_agent.py

The loop is ours, not LangGraph's: it adds no dependency, and it shows the one thing a 135M
model needs from it. The first turn forces a call (`tool_choice="any"`): the tool is the one
whose description makes the question most likely, and its arguments are written into JSON we
write. Later turns are `auto`: the model reads the tool result and answers (or calls again).
"""

from __future__ import annotations

import ast
import operator

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool

from selfguard_guardrails.integrations.langchain import ChatSelfGuard

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    forecasts = {"paris": "light rain, 14 C", "cairo": "sunny, 31 C"}
    return forecasts.get(city.strip().lower(), "clear skies, 20 C")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as 17 * 23."""
    def evaluate(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](evaluate(node.left), evaluate(node.right))
        raise ValueError(f"not arithmetic: {expression!r}")
    try:
        return str(evaluate(ast.parse(expression.replace("x", "*"), mode="eval").body))
    except (SyntaxError, ValueError, ZeroDivisionError) as error:
        return f"error: {error}"


TOOLS = {t.name: t for t in (get_weather, calculator)}


def run_agent(model: ChatSelfGuard, question: str, max_steps: int = 3) -> tuple[str, list[BaseMessage]]:
    """Model turns and tool runs until the model answers without a call (or `max_steps`)."""
    messages: list[BaseMessage] = [SystemMessage("Use the tools, then answer in one sentence."),
                                   HumanMessage(question)]
    for step in range(max_steps):
        reply = model.bind_tools(list(TOOLS.values()), tool_choice="any" if step == 0 else "auto").invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return str(reply.content), messages
        messages += [TOOLS[call["name"]].invoke(call) for call in reply.tool_calls]  # ToolMessages
    return "", messages


def main() -> int:
    model = ChatSelfGuard(max_tokens=48)
    for question in ("What is the weather in Paris?", "What is 17 times 23?"):
        answer, messages = run_agent(model, question)
        calls = [f"{c['name']}({c['args']})" for m in messages for c in getattr(m, "tool_calls", [])]
        results = [m.content for m in messages if m.type == "tool"]
        print(f"Q: {question}\n  tool calls: {calls}\n  tool results: {results}\n  A: {answer!r}")
        print(f"  answer uses the result: {any(r.split(',')[0] in answer for r in results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
