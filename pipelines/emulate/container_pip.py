"""The emulated container's `pip`: a quiet `pip install -r FILE` whose requirements are all installed already.

pip resolves every requirement and its dependency tree before it concludes that there is nothing to do, and that
costs seconds per job. Here every requirement (markers applied) and, recursively, each dependency it declares is
looked up among the installed distributions; when all of them satisfy their specifiers, pip would install nothing
and print nothing, so this exits 0 at once. Anything else (a missing or mismatched distribution, an option, a URL,
a non-quiet call) runs pip itself, which, without an index (PIP_NO_INDEX), installs nothing new and fails loudly.

Run as a script by the container's `pip` shim; it imports nothing from sagepipe.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

_COMMENT = re.compile(r"(^|\s+)#.*$")


def main(argv: list[str]) -> int:
    requirements = _quiet_install_requirements(argv)
    if requirements is not None and _all_installed(requirements):
        return 0
    os.execv(sys.executable, [sys.executable, "-m", "pip", *argv])
    return 1  # not reached


def _quiet_install_requirements(argv: list[str]) -> list[str] | None:
    """The requirement lines of `install -q [-r FILE] [SPEC]...`, or None for any other call."""
    if not argv or argv[0] != "install":
        return None
    quiet, lines, args = False, [], iter(argv[1:])
    for arg in args:
        if arg in ("-q", "-qq", "-qqq", "--quiet"):
            quiet = True
        elif arg in ("-r", "--requirement") or arg.startswith("--requirement="):
            path = arg.partition("=")[2] or next(args, "")
            try:
                text = Path(path).read_text()
            except (OSError, ValueError):
                return None
            if "\\\n" in text or "${" in text:  # continuations and variables: pip's own parsing
                return None
            lines += [_COMMENT.sub("", line).strip() for line in text.splitlines()]
        elif arg.startswith("-"):
            return None
        else:
            lines.append(arg)
    lines = [line for line in lines if line]
    if not quiet or any(line.startswith("-") for line in lines):
        return None
    return lines


def _all_installed(lines: list[str]) -> bool:
    """Each requirement, and what it and its dependencies declare (markers applied), installed at a version
    that satisfies it."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name
    except ImportError:
        return False
    seen: set[tuple[str, frozenset[str]]] = set()

    def applies(req: Requirement, extras: set[str]) -> bool:
        return req.marker is None or any(req.marker.evaluate({"extra": extra}) for extra in extras)

    def installed(req: Requirement) -> bool:
        if req.url:
            return False
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            return False
        if not req.specifier.contains(dist.version, prereleases=True):
            return False
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            return True
        seen.add(key)
        extras = {""} | set(req.extras)
        dependencies = [Requirement(text) for text in dist.requires or []]
        return all(installed(dep) for dep in dependencies if applies(dep, extras))

    try:
        return all(installed(req) for req in map(Requirement, lines) if applies(req, {""}))
    except InvalidRequirement:
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
