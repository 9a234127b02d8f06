"""Errors that reach a user: each names where the problem is and how to fix it."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable


def close_match(word: str, choices: Iterable[str]) -> str | None:
    """The closest choice to a misspelt word, or None when nothing is close."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' — did you mean 'x'?' for a close match, else a list of what is allowed."""
    choices = sorted({str(c) for c in choices})
    match = close_match(word, choices)
    if match:
        return f" — did you mean '{match}'?"
    if not choices:
        return ""
    shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
    return f" (expected one of: {shown})"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where (file, line, field path) and what."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        field_path = f" {self.path}:" if self.path else ""
        return f"{where}:{field_path} {self.message}"


# Exit codes of `sagepipe` (README, "Exit codes"): one per kind of outcome, 2 only for bad config or usage.
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_REGISTRY, EXIT_AWS = 3, 4, 5, 6
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem the user can fix, told in one message without a traceback; exit_code says which kind."""

    exit_code = EXIT_FAILED


@dataclass
class ConfigError(UserError):
    """A config (or its overlay, parameters or command-line usage) is invalid; the CLI exits 2."""

    exit_code = EXIT_CONFIG
    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        head = "invalid pipeline config" + (
            f" ({len(self.problems)} problems)" if len(self.problems) > 1 else ""
        )
        return head + ":\n" + "\n".join(f"  {p}" for p in self.problems)


class StepFailed(Exception):
    """A step's work failed in a way the runner reports as that step's failure message."""


class NotFound(UserError):
    """Something the command names does not exist (a run id, say): exit 3."""

    exit_code = EXIT_NOT_FOUND


class RegistryError(UserError):
    """A registry request that cannot be carried out (unknown group, bad transition): exit 5."""

    exit_code = EXIT_REGISTRY


class AwsError(UserError):
    """An AWS call that failed for a reason a person can fix (credentials, permissions, throttling): exit 6."""

    exit_code = EXIT_AWS


class UsageError(UserError):
    """A command given something it cannot use (an argument, an input file): exit 2, as for a bad config."""

    exit_code = EXIT_CONFIG
