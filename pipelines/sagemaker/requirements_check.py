"""Does a job's requirements file install in its image? pip resolves it for the image's Python and platform.

`pip install --dry-run --ignore-installed --python-version 3.12 --platform manylinux_2_34_x86_64 ... -r FILE`
resolves the whole dependency tree against the package index without installing anything (wheels only: pip
cannot build a source archive for another interpreter). What the image preinstalls at a satisfying version is
left out of the resolve, as the container's pip would leave it alone. Answers are kept under the state folder
(`<state>/requirements-checks/`), keyed by the file's contents, the image's Python and platform and the index
options, so a second compile asks no index. When pip cannot reach its index the check says so in one warning line
and does not refuse anything.

Environment: SAGEPIPE_PIP_INDEX_ARGS, extra pip options for the index (e.g. `--no-index --find-links DIR`);
SAGEPIPE_REQUIREMENTS_CHECK=off skips the check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from pipelines.errors import Problem
from pipelines.sagemaker.images import Image, resolve

CHECK_ENV = "SAGEPIPE_REQUIREMENTS_CHECK"
INDEX_ENV = "SAGEPIPE_PIP_INDEX_ARGS"
FORMAT = 1
TIMEOUT_S = 300
# What pip writes when it could not talk to an index (the resolve then fails for that reason alone).
NETWORK_SIGNS = ("Retrying (Retry(", "NewConnectionError", "NameResolutionError", "ConnectTimeoutError",
                 "ReadTimeoutError", "ProxyError", "SSLError", "Could not fetch URL", "Max retries exceeded",
                 "is not a trusted or secure host", "Network is unreachable", "connection error")
log = logging.getLogger("sagepipe")


@dataclass(frozen=True)
class Verdict:
    """pip's answer for one requirements file in one image: ok, or the requirement it could not satisfy and why."""

    ok: bool
    package: str = ""
    reason: str = ""
    resolved: tuple[str, ...] = ()  # name==version of everything pip resolved (in an empty environment)


def check_requirements(image: str | Mapping[str, Any] | Image, requirements_file: str | Path, step: str = "",
                       state_root: Path | None = None, index_args: Sequence[str] | None = None,
                       shown: str | None = None, config_file: str = "") -> Problem | None:
    """A Problem when requirements_file cannot be installed in image (a URI, a key of images.IMAGES, a framework
    dict or a record), naming the step, the image, its Python and the package; else None, also when it cannot be
    told (pip could not reach its index, the image's Python is unknown: one warning line each).

    shown names the file in messages (default: as given); config_file is where the step is configured (default:
    the requirements file). Usable wherever a job is about to run: compile and validate check every step
    (checks.py), emulate each job."""
    record = resolve(image)
    path = Path(requirements_file)
    shown = shown or str(path)
    field = f"steps.{step}.requirements" if step else "requirements"
    if not path.is_file():
        return Problem(config_file or shown, None, field, f"requirements file '{shown}' does not exist")
    if os.environ.get(CHECK_ENV, "").lower() in ("off", "0", "false", "no"):
        return None
    if record is None:
        log.warning(f"warning: {field}: cannot check {shown} for image {_named(image)}: its Python is unknown "
                    "(pipelines/sagemaker/images.py lists the images it knows)")
        return None
    verdict = resolve_requirements(record, path, state_root, index_args)
    if verdict is None or verdict.ok:
        return None
    return Problem(config_file or shown, None, field, f"{shown} cannot be installed in the job's image "
                   f"{_named(image, record)}: {verdict.package}: {verdict.reason}")


def stands_in_for(image: str | Mapping[str, Any] | Image) -> str:
    """What emulate says before a job: the image it stands in for and the interpreter that runs the job instead."""
    record = resolve(image)
    here = f"this machine's Python {sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    if record is None:
        return f"[sagepipe] emulating image {_named(image)} (Python unknown) with {here}"
    return f"[sagepipe] emulating image {_named(image, record)} with {here}"


def requirements_in_entrypoint(entrypoint: Sequence[str]) -> str | None:
    """The container path a compiled processing job installs (`pip install ... -r <path>` in its entrypoint)."""
    match = re.search(r"\bpip3? install\b[^&;|]*?(?:-r|--requirement)[ =](\S+)", " ".join(entrypoint))
    return match[1] if match else None


def resolve_requirements(image: Image, path: Path, state_root: Path | None = None,
                         index_args: Sequence[str] | None = None) -> Verdict | None:
    """pip's verdict for path in image, from the cache or from pip; None when pip could not tell (warned)."""
    index = list(index_args) if index_args is not None else shlex.split(os.environ.get(INDEX_ENV, ""))
    lines = _kept_lines(path, image)
    key = hashlib.sha256(json.dumps({"format": FORMAT, "requirements": _digest(path), "python": image.python,
                                     "platforms": image.pip_platforms(), "index": index, "resolve": lines},
                                    sort_keys=True).encode()).hexdigest()[:32]
    cache = verdicts_folder(state_root) / f"{key}.json"
    try:
        stored = json.loads(cache.read_text())
        return Verdict(bool(stored["ok"]), str(stored["package"]), str(stored["reason"]),
                       tuple(stored.get("resolved", ())))
    except (OSError, ValueError, TypeError, KeyError):
        pass
    if lines == []:
        verdict: Verdict | None = Verdict(True)  # the image has all of it
    else:
        verdict = _ask_pip(image, path, lines, index)
    if verdict is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({**asdict(verdict), "file": str(path), "python": image.python,
                                         "platform": image.platform}, indent=2))
        temporary.replace(cache)
    return verdict


def verdicts_folder(state_root: Path | None = None) -> Path:
    """Where pip's answers are kept: `<state_root>/requirements-checks` when a state folder is given, else one
    folder per user ($SAGEPIPE_REQUIREMENTS_CACHE, default ~/.cache/sagepipe/requirements-checks). An answer is
    a fact about the file, the image's Python and platform and the index, not about a state folder: like pip's
    own cache, every project and state folder on the machine shares it, so a fresh state folder does not ask
    pip again for what it already answered."""
    if state_root is not None:
        return state_root / "requirements-checks"
    if os.environ.get("SAGEPIPE_REQUIREMENTS_CACHE"):
        return Path(os.environ["SAGEPIPE_REQUIREMENTS_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sagepipe" / "requirements-checks"


def pip_command(image: Image, index: Sequence[str], requirements: Sequence[str]) -> list[str]:
    """The resolve-only pip call for image: its Python, implementation, ABI and platforms; wheels only."""
    nodot = image.python.replace(".", "")
    platforms = [arg for tag in image.pip_platforms() for arg in ("--platform", tag)]
    return [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", "--ignore-installed",
            "--disable-pip-version-check", "--no-input", "--retries", "1", "--python-version", image.python,
            "--implementation", "cp", "--abi", f"cp{nodot}", *platforms, "--only-binary=:all:", *index,
            *requirements]


def _ask_pip(image: Image, path: Path, lines: list[str] | None, index: list[str]) -> Verdict | None:
    with tempfile.TemporaryDirectory(prefix="sagepipe-resolve-") as folder:
        if lines is None:  # options or includes in the file: pip reads it itself
            requirements = ["-r", str(path)]
        else:
            kept = Path(folder) / "requirements.txt"
            kept.write_text("\n".join(lines) + "\n")
            requirements = ["-r", str(kept)]
        try:
            done = run_pip(pip_command(image, index, requirements))
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning(f"warning: could not check {path} for Python {image.python} ({exc}); going on unchecked")
            return None
    output = done.stderr + done.stdout
    if done.returncode == 0:
        try:
            report = json.loads(done.stdout)
            resolved = tuple(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in report["install"])
        except (ValueError, KeyError, TypeError):
            resolved = ()
        return Verdict(True, resolved=resolved)
    if "No module named pip" in output:
        log.warning(f"warning: could not check {path}: this Python has no pip; going on unchecked")
        return None
    unreachable = [line.strip() for line in output.splitlines() if any(sign in line for sign in NETWORK_SIGNS)]
    if unreachable:
        log.warning(f"warning: could not check {path} for Python {image.python}: pip could not reach its package "
                    f"index ({unreachable[-1][:200]}); going on unchecked")
        return None
    package, reason = _failure(output, image)
    return Verdict(False, package, reason)


def run_pip(argv: list[str]) -> subprocess.CompletedProcess:
    """Run pip (one place, so a test can count the calls)."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S,
                          env={**os.environ, "PIP_NO_INPUT": "1"})


def _failure(output: str, image: Image) -> tuple[str, str]:
    """(requirement, why) from pip's error output."""
    if match := re.search(r"Package '([^']+)' requires a different Python: \S+ not in '([^']+)'", output):
        return match[1], f"requires Python {match[2]}, and the image has Python {image.python}"
    if match := re.search(r"No matching distribution found for (.+)", output):
        requirement = match[1].strip()
        pinned = re.search(r"===?\s*([\w.!+-]+)", requirement)
        for ignored in re.findall(r"require a different python version: (.+)", output):
            for version, needs in re.findall(r"([\w.!+-]+) Requires-Python (\S+?)(?:[;,]|$)", ignored):
                if pinned and version == pinned[1]:
                    return requirement, f"requires Python {needs}, and the image has Python {image.python}"
        versions = re.search(r"satisfies the requirement \S+ \(from versions: ([^)]*)\)", output)
        found = (versions[1] if versions else "").split(", ")
        seen = f" (versions found: {', '.join(found[-6:])})" if found != [""] else " (no versions found)"
        return requirement, f"no release has a wheel for Python {image.python} on {image.platform}{seen}"
    if match := re.search(r"Cannot install (.+?) because these package versions have conflicting dependencies",
                          output):
        causes = re.findall(r"^\s+(\S.* depends on .+)$", output, re.MULTILINE)
        return match[1], "conflicting dependencies" + (f" ({'; '.join(causes[:3])})" if causes else "")
    return "(the file)", _first_error(output)


def _first_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")] or lines or ["pip failed"]
    return errors[0].removeprefix("ERROR:").strip()[:300]


def _kept_lines(path: Path, image: Image) -> list[str] | None:
    """The requirement lines left to resolve: those the image's preinstalled versions satisfy are left out; None
    when the file holds options or includes (then pip reads the whole file)."""
    text = path.read_text(errors="replace")
    lines = [re.sub(r"(^|\s)#.*$", "", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if any(line.startswith("-") or "\\" in line for line in lines):
        return None
    Requirement, canonical = _packaging()
    if Requirement is None:
        return lines
    installed = {canonical(name): version for name, version in image.preinstalled.items() if version}
    kept = []
    for line in lines:
        try:
            req = Requirement(line)
        except Exception:  # an invalid line: pip names it
            kept.append(line)
            continue
        version = installed.get(canonical(req.name))
        if version is None or req.extras or req.url or req.marker is not None \
                or not req.specifier.contains(version, prereleases=True):
            kept.append(line)
    return kept


def _packaging() -> tuple[Any, Any]:
    """packaging's Requirement and canonicalize_name: the installed one, else pip's own copy (the core install of
    sagepipe has no packaging, and a check needs pip anyway)."""
    import importlib

    for root in ("packaging", "pip._vendor.packaging"):
        try:
            requirements = importlib.import_module(f"{root}.requirements")
            utils = importlib.import_module(f"{root}.utils")
        except ImportError:
            continue
        return requirements.Requirement, utils.canonicalize_name
    return None, None


def _digest(path: Path) -> str:
    """The file's contents and those of the files it includes (-r, -c), relative to it."""
    digest, seen, todo = hashlib.sha256(), set(), [path]
    while todo:
        current = todo.pop()
        if current in seen or not current.is_file():
            continue
        seen.add(current)
        text = current.read_bytes()
        digest.update(str(current.name).encode() + b"\0" + text + b"\0")
        for match in re.finditer(rb"^\s*(?:-r|-c|--requirement|--constraint)[ =]\s*(\S+)", text, re.MULTILINE):
            todo.append(current.parent / match[1].decode(errors="replace"))
    return digest.hexdigest()


def _named(image: str | Mapping[str, Any] | Image, record: Image | None = None) -> str:
    """The image as a user knows it, with its Python and platform when known."""
    if isinstance(image, str):
        name = f"{record.repository} {record.version}" if record is not None and record.key == image else image
    elif isinstance(image, Image):
        name = f"{image.repository} {image.version}"
    else:
        name = " ".join(str(image[k]) for k in ("framework", "version", "py_version", "scope") if image.get(k))
        if record is not None and record.framework:
            name = f"{record.repository} {record.version}"
    if record is None:
        return name
    return f"{name} (Python {record.python}, {record.platform})"
