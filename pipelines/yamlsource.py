"""YAML loading that remembers where every value came from (file and line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.errors import ConfigError, Problem

PathKey = tuple[Any, ...]


def format_path(path: PathKey) -> str:
    """('steps', 2, 'inputs', 'raw') -> 'steps[2].inputs.raw'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class SourceMap:
    """Maps a field path to the (file, line) that set it; later files override earlier ones."""

    default_file: str
    lines: dict[PathKey, tuple[str, int]] = field(default_factory=dict)

    def locate(self, path: PathKey) -> tuple[str, int | None]:
        """The file and line of a path, or of its closest ancestor that has one."""
        for end in range(len(path), -1, -1):
            hit = self.lines.get(tuple(path[:end]))
            if hit:
                return hit
        return self.default_file, None

    def problem(self, path: PathKey, message: str, shown_path: str | None = None) -> Problem:
        """A Problem located at path."""
        file, line = self.locate(path)
        return Problem(file, line, format_path(path) if shown_path is None else shown_path, message)

    def rebase(self, old: PathKey, new: PathKey) -> None:
        """Record lines found under `old` (an overlay's path) under `new` (the merged path)."""
        for key, where in list(self.lines.items()):
            if key[: len(old)] == old and old != new:
                self.lines[new + key[len(old):]] = where


def _read_text(path: Path, shown: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem(shown, None, "", "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(shown, None, "", "is a directory, expected a YAML file")]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [Problem(shown, line, "", f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8")]
        ) from None


def load_yaml(path: Path, shown: str, source_map: SourceMap, prefix: PathKey = ()) -> Any:
    """Parse a YAML file safely; record each value's line in source_map under prefix."""
    text = _read_text(path, shown)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = f", column {mark.column + 1}" if mark else ""
        what = (exc.problem or "syntax error").strip()
        context = f" ({exc.context.strip()})" if exc.context else ""
        raise ConfigError(
            [Problem(shown, line, "", f"YAML syntax error{col}: {what}{context}")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(shown, None, "", f"YAML error: {exc}")]) from None
    problems: list[Problem] = []
    if node is not None:
        _walk(node, prefix, shown, source_map, problems)
    if problems:
        raise ConfigError(problems)
    return data


def _walk(node: yaml.Node, path: PathKey, shown: str, smap: SourceMap, problems: list[Problem]) -> None:
    smap.lines[path] = (shown, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                problems.append(
                    Problem(shown, key_node.start_mark.line + 1, format_path(path + (key,)),
                            "key appears twice in the same mapping; keep one")
                )
            seen.add(key)
            _walk(value_node, path + (key,), shown, smap, problems)
            smap.lines[path + (key,)] = (shown, key_node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), shown, smap, problems)
