"""The emulated container's `pip`: a `pip install -r FILE` whose requirements are all installed already.

pip resolves every requirement and its dependency tree before it concludes that there is nothing to do, and that
costs seconds per job. Here every requirement (markers applied) and, recursively, each dependency it declares is
looked up among the installed distributions; when all of them satisfy their specifiers, pip would install nothing
and print nothing (with -q; else its "Requirement already satisfied" lines, as here), so this exits 0 at once.
Anything else (a missing or mismatched distribution, an option, a URL) runs pip itself, which, without an index
(PIP_NO_INDEX), installs nothing new and fails loudly.

Before that, the job's own image is asked: with $SAGEPIPE_EMULATED_IMAGE set (the image the job stands in for),
a requirements file that cannot be installed for that image's Python and platform fails the install with the
message `sagepipe compile` gives (pipelines/sagemaker/requirements_check.py, its cached answer when there is one),
as it would fail in the real container.

Run as a script by the container's `pip` shim; it imports nothing from sagepipe but that check, and only then.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

_COMMENT = re.compile(r"(^|\s+)#.*$")


def main(argv: list[str]) -> int:
    refusal = _image_refuses(argv)
    if refusal:
        print(refusal, file=sys.stderr, flush=True)
        return 1
    found = _install_requirements(argv)
    if found is not None:
        requirements, quiet = found
        verdict = _verdict_file(requirements)
        satisfied = verdict is not None and verdict.is_file()
        if not satisfied and _all_installed(requirements):
            satisfied = True
            if verdict is not None:
                verdict.parent.mkdir(parents=True, exist_ok=True)
                verdict.touch()
        if satisfied:
            if not quiet:  # what pip would say, marked as not pip's own words
                for line in requirements:
                    print(f"Requirement already satisfied: {line}")
                print("(sagepipe emulate: every requirement and its dependencies are installed; pip was not run)")
            return 0
    os.execv(sys.executable, [sys.executable, "-m", "pip", *argv])
    return 1  # not reached


def _install_requirements(argv: list[str]) -> tuple[list[str], bool] | None:
    """(requirement lines, quiet) of `install [-q] [-r FILE] [SPEC]...`, or None for any other call."""
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
    if any(line.startswith("-") for line in lines):
        return None
    return lines, quiet


def _image_refuses(argv: list[str]) -> str | None:
    """Why the image this job stands in for cannot install the `-r` file of this `pip install` (None: it can,
    or there is no image or file to ask about, or the check is off)."""
    image = os.environ.get("SAGEPIPE_EMULATED_IMAGE")
    off = os.environ.get("SAGEPIPE_REQUIREMENTS_CHECK", "").lower() in ("off", "0", "false", "no")
    if not image or not argv or argv[0] != "install" or off:
        return None
    files = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("-r", "--requirement")]
    files += [arg.partition("=")[2] for arg in argv if arg.startswith("--requirement=")]
    if not files:
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the sagepipe checkout (or install) holding us
    from pipelines.sagemaker.requirements_check import check_requirements

    no_index = os.environ.pop("PIP_NO_INDEX", None)  # the container's pip installs nothing; the check asks the index
    try:
        for file in files:
            problem = check_requirements(image, file, os.environ.get("SAGEPIPE_EMULATED_STEP", ""),
                                         shown=Path(file).name)
            if problem is not None:
                return f"sagepipe emulate: {problem.message}"
    finally:
        if no_index is not None:
            os.environ["PIP_NO_INDEX"] = no_index
    return None


def _verdict_file(lines: list[str]) -> Path | None:
    """Where "all installed" is remembered for these requirements in this interpreter's environment, under
    $SAGEPIPE_PIP_VERDICTS (unset: nothing is remembered). The key holds the modification time of every folder
    on sys.path (site-packages among them), which changes whenever a distribution is installed, upgraded or
    removed there."""
    import hashlib

    folder = os.environ.get("SAGEPIPE_PIP_VERDICTS")
    if not folder:
        return None
    sites = [p for p in sys.path if p and os.path.isdir(p)]
    key = "\0".join([sys.executable, *lines, *(f"{p}={os.stat(p).st_mtime_ns}" for p in sites)])
    return Path(folder) / hashlib.sha256(key.encode()).hexdigest()


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
