"""What a resume keeps: parameters a finished step used that changed since, and how finished steps are shown."""

from __future__ import annotations

from typing import Any, Callable

from pipelines.graph import step_refs
from pipelines.refs import ParamRef

SHOWN = ("duration_s", "note", "cached_from", "reason")


def used_params(step: Any) -> list[str]:
    """The pipeline parameters a step refers to, in the order it names them."""
    return list(dict.fromkeys(ref.name for ref in step_refs(step) if isinstance(ref, ParamRef)))


def param_change(step: Any, before: dict[str, Any], now: dict[str, Any]) -> str | None:
    """Why a finished step must run again after `resume --param`: the parameters it uses whose values changed."""
    changed = [f"{name} {before.get(name)!r} → {now.get(name)!r}" for name in used_params(step)
               if before.get(name) != now.get(name)]
    return f"parameter {', '.join(changed)}" if changed else None


def replay(state: Any, names: list[str], report: Callable[[str, str, dict[str, Any]], None]) -> None:
    """Tell the progress view about steps that are already finished, so they show as done, not pending."""
    for name in names:
        record = state.step(name)
        if record["status"] in {"succeeded", "cached"}:
            report(name, record["status"], {"earlier": True, **{k: record[k] for k in SHOWN if record.get(k)}})
