"""Values as text and text as values: the one boolean rule and the one `--param` parser every command uses.

A SageMaker definition, a tag, a hyperparameter and a CLI argument all spell booleans `true`/`false`; a person
may type `true/false/yes/no/1/0` (any case) for a boolean `--param`, whichever command takes it.
"""

from __future__ import annotations

import re
from typing import Any

_NUMBER = r"(\d+(?:[.,]\d+)?)"
# ISO 8601 durations as CacheConfig.ExpireAfter takes them: P30D, PT12H, P1DT12H, P4W, and (SDK docstring, developer
# guide) lower case and the P left out (p30d, T12H, 30d, 30dT5h)
_DURATION = re.compile(rf"^(P)?(?:{_NUMBER}Y)?(?:{_NUMBER}M)?(?:{_NUMBER}W)?(?:{_NUMBER}D)?"
                       rf"(?:(T)(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?$", re.IGNORECASE)
_SECONDS = (365 * 86400, 30 * 86400, 7 * 86400, 86400, 3600, 60, 1)

TRUE_WORDS = frozenset({"true", "yes", "1"})
FALSE_WORDS = frozenset({"false", "no", "0"})

# A parameter's type as the YAML (`boolean`) or a SageMaker definition (`Boolean`) names it.
_KINDS = {"string": "string", "integer": "integer", "float": "float", "boolean": "boolean"}


def bool_text(value: bool) -> str:
    """`true` or `false`, as JSON, SageMaker and our YAML spell a boolean."""
    return "true" if value else "false"


def value_text(value: Any) -> str:
    """A value as a person or the service reads it: booleans as `true`/`false`, anything else as str()."""
    return bool_text(value) if isinstance(value, bool) else str(value)


def split_param(item: str) -> tuple[str, str] | None:
    """`NAME=VALUE` as (name, value text); None when it has no `=` or no name."""
    name, sep, text = item.partition("=")
    return (name.strip(), text) if sep and name.strip() else None


def parse_param(kind: str, text: str) -> Any:
    """The typed value of `--param NAME=text` for a parameter of kind string/integer/float/boolean (either
    spelling); ValueError saying what was expected."""
    normal = _KINDS.get(kind.lower())
    if normal is None:
        raise ValueError(f"unknown parameter type {kind!r}")
    if normal == "boolean":
        word = text.strip().lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            raise ValueError(f"{text!r} is not a boolean (true/false, yes/no or 1/0)")
        return word in TRUE_WORDS
    try:
        return int(text) if normal == "integer" else float(text) if normal == "float" else text
    except ValueError:
        raise ValueError(f"{text!r} is not {'an' if normal == 'integer' else 'a'} {normal}") from None


def duration_seconds(text: str) -> float:
    """ISO 8601 duration (as SageMaker's CacheConfig takes it) in seconds; ValueError says what is wrong."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match or not _well_formed(match):
        raise ValueError(f"{text!r} is not an ISO 8601 duration (P30D, PT12H, P1DT12H, P4W, T12H or 30d)")
    date, time_part = match.groups()[1:5], match.groups()[6:]
    numbers = [float((v or "0").replace(",", ".")) for v in (*date, *time_part)]
    return sum(n * s for n, s in zip(numbers, _SECONDS))


def _well_formed(match: re.Match) -> bool:
    """At least one unit; a T is followed by at least one time unit. The P may be left out, as the developer
    guide's own examples do ("30d", "5y", "T16m", "30dT5h")."""
    groups = match.groups()
    date, time_designator, time_part = groups[1:5], groups[5], groups[6:]
    has_date, has_time = any(date), any(time_part)
    if time_designator and not has_time:
        return False
    return has_date or has_time
