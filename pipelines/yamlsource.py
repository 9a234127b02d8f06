"""YAML loading that remembers where every value came from (file and line)."""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer

from pipelines.errors import ConfigError, Problem

PathKey = tuple[Any, ...]
MAX_DEPTH = 100
MAX_ALIAS_VALUES = 100_000
_TOO_DEEP = f"values nested more than {MAX_DEPTH} levels deep; a pipeline config needs far fewer"
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
# libyaml parses; the composer is PyYAML's Python one (also in SafeLoader), so that it can be bounded
_LOADER_BASES = (Composer, yaml.CSafeLoader) if hasattr(yaml, "CSafeLoader") else (yaml.SafeLoader,)


def format_path(path: PathKey) -> str:
    """('steps', 2, 'inputs', 'raw') -> 'steps[2].inputs.raw'; ('inputs', '../x') -> "inputs['../x']"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(str(part)):
            out += ("." if out else "") + str(part)
        else:
            out += f"[{str(part)!r}]"
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
    """Parse a YAML file safely, once; record each value's line in source_map under prefix."""
    loader = _Loader(_read_text(path, shown))
    collecting = gc.isenabled()
    gc.disable()  # parsing makes many objects and no cycles; collecting would take most of the time
    problems: list[Problem] = []
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
        if node is not None:
            _walk(node, prefix, shown, source_map, problems, set())
    except _Refused as exc:
        raise ConfigError([Problem(shown, exc.line, "", exc.message)]) from None
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
    finally:
        loader.dispose()
        if collecting:
            gc.enable()
    if problems:
        raise ConfigError(problems)
    return data


class _Refused(Exception):
    """YAML that parses but that a config must not be (too deep, an alias bomb, a loop, an unreadable value)."""

    def __init__(self, mark: Any, message: str):
        super().__init__(message)
        self.line, self.message = mark.line + 1, message


class _Loader(*_LOADER_BASES):  # type: ignore[misc]
    """The safe loader (libyaml's parser when available) with a composer that bounds what aliases expand to.

    Aliases are shared nodes: each node's size and height, aliases included, is computed once when it is
    composed, so a "billion laughs" file is refused as soon as its aliases repeat too much, never expanded."""

    def __init__(self, text: str):
        _LOADER_BASES[-1].__init__(self, text)
        Composer.__init__(self)
        self.depth = 0
        self.alias_values = 0
        self.open_anchors: set[str] = set()
        self.size: dict[int, int] = {}
        self.height: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            return self._alias(event, parent, index)
        if self.depth >= MAX_DEPTH:
            raise _Refused(event.start_mark, _TOO_DEEP)
        self.depth += 1
        if event.anchor:
            self.open_anchors.add(event.anchor)
        node = super().compose_node(parent, index)
        self.open_anchors.discard(event.anchor)
        self.depth -= 1
        if not isinstance(node, yaml.ScalarNode):
            children = _children(node)
            self.size[id(node)] = 1 + sum([self.size.get(id(c), 1) for c in children])
            self.height[id(node)] = 1 + max([self.height.get(id(c), 1) for c in children], default=0)
        return node

    def _alias(self, event: Any, parent: Any, index: Any) -> Any:
        name = event.anchor
        if name in self.open_anchors:
            raise _Refused(event.start_mark, f"alias *{name} is inside the value anchored &{name}, so it would "
                                             "repeat forever (a recursive alias); write the value out instead")
        node = super().compose_node(parent, index)
        if self.depth + self.height.get(id(node), 1) > MAX_DEPTH:
            raise _Refused(event.start_mark, _TOO_DEEP + " (counting what aliases repeat)")
        self.alias_values += self.size.get(id(node), 1)
        if self.alias_values > MAX_ALIAS_VALUES:
            raise _Refused(event.start_mark, f"aliases repeat more than {MAX_ALIAS_VALUES:,} values (by alias "
                                             f"*{name}); a pipeline config needs far fewer — write the values "
                                             "out or use fewer aliases")
        return node

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except ValueError as exc:
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise _Refused(node.start_mark, f"{node.value!r} looks like a {kind} but is not one ({exc}); "
                                            "quote it to keep it as text") from None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return node.value


def _walk(node: yaml.Node, path: PathKey, shown: str, smap: SourceMap, problems: list[Problem],
          checked: set[int]) -> None:
    smap.lines[path] = (shown, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first_visit = id(node) not in checked  # a mapping an alias repeats reports its duplicates once
        checked.add(id(node))
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen and first_visit:
                problems.append(
                    Problem(shown, key_node.start_mark.line + 1, format_path(path + (key,)),
                            "key appears twice in the same mapping; keep one")
                )
            seen.add(key)
            _walk(value_node, path + (key,), shown, smap, problems, checked)
            smap.lines[path + (key,)] = (shown, key_node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), shown, smap, problems, checked)
