"""A local stand-in for a job's container: its /opt/ml is a folder, its python3 and pip are this interpreter.

Every "/opt/ml" in the entrypoint, the arguments and the SDK's driver scripts is rewritten to that folder, and
every folder built from a definition's value (a LocalPath, a channel name, an /opt/ml path on the command line)
must lie inside it, '..' and symbolic links followed (ContainerPathError otherwise);
pip never reaches an index (PIP_NO_INDEX), so a requirement this environment lacks fails the job loudly
instead of changing the environment (and a quiet install of what is all installed already ends at once:
container_pip.py).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path, PurePosixPath
from typing import Any

from pipelines.errors import StepFailed

OPT_ML = "/opt/ml"
_OPT_ML = re.compile(r"(?<![\w./-])/opt/ml(?![\w.-])")  # not inside another path, so rewriting is idempotent
TEXT_SUFFIXES = (".py", ".sh", ".json", ".txt", ".cfg")
CONTAINER_PIP = Path(__file__).with_name("container_pip.py")
# an /opt/ml path inside a command line: up to the next space, quote or shell operator
_OPT_ML_WORD = re.compile(r"(?<![\w./-])/opt/ml(?:/[^\s'\"`;&|()<>$]*)?")
# How SDK v3's training driver (sm_drivers/scripts/install_requirements.py) runs pip: `python -m pip install -r`
SDK_PIP_CALL = '[python_executable, "-m", "pip", "install"'


class Container:
    """One job's file system root and the command line that runs in it."""

    def __init__(self, root: Path, pip_verdicts: Path):
        self.root = root
        self.pip_verdicts = pip_verdicts  # shared by the jobs of an emulation (container_pip.py)
        self.opt_ml = root / "opt" / "ml"
        self.bin = root / "bin"
        self.image: dict[str, str] = {}  # the image it stands in for: SAGEPIPE_EMULATED_{IMAGE,STEP}

    @property
    def step(self) -> str:
        return self.image.get("SAGEPIPE_EMULATED_STEP") or self.root.name

    def path(self, container_path: str, field: str = "path") -> Path:
        """The local folder standing for a path inside the container (/opt/ml or under it), which must stay in the
        container's /opt/ml once '..' and symbolic links are followed; field names the definition's field that
        gave the path, for the error."""
        text = container_path if isinstance(container_path, str) else ""
        if text != OPT_ML and not text.startswith(OPT_ML + "/"):
            raise ContainerPathError(self.step, field, container_path,
                                     "is not under /opt/ml, which is all of a container the emulator can provide")
        parts = PurePosixPath(text[len(OPT_ML):].lstrip("/")).parts
        if ".." in parts or "\0" in text:
            raise ContainerPathError(self.step, field, container_path, "climbs out of /opt/ml with '..'")
        local = self.opt_ml.joinpath(*parts)
        top = self.root.resolve() / "opt" / "ml"  # where /opt/ml must be, not where a planted link sends it
        real = local.resolve()
        if real != top and top not in real.parents:
            raise ContainerPathError(self.step, field, container_path,
                                     f"leads to {real} through a symbolic link, outside the container's {top}")
        return local

    def confine(self, words: list[Any], field: str) -> None:
        """Every /opt/ml path named in command-line words (an entrypoint, arguments) must lie inside /opt/ml."""
        for index, word in enumerate(words):
            if isinstance(word, str):
                for match in _OPT_ML_WORD.finditer(word):
                    self.path(match.group(0), f"{field}[{index}]")

    def rewrite(self, value: Any) -> Any:
        """Arguments and entrypoints with /opt/ml pointing at this container's folder."""
        if isinstance(value, str):
            return _OPT_ML.sub(str(self.opt_ml).replace("\\", "\\\\"), value)
        if isinstance(value, list):
            return [self.rewrite(v) for v in value]
        return value

    def rewrite_files(self, folder: Path, suffixes: tuple[str, ...] = (".py", ".sh")) -> None:
        """Scripts (and the SDK's driver files) name /opt/ml throughout: point them here."""
        for file in folder.rglob("*"):
            if file.is_file() and not file.is_symlink() and file.suffix in suffixes:
                text = file.read_text(errors="replace")
                if OPT_ML in text:
                    file.write_text(self.rewrite(text))

    def route_pip(self, drivers: Path) -> None:
        """The SDK's training driver calls `python -m pip`, past the `pip` shim: send it to container_pip too
        (left as it is if the SDK words the call differently: real pip then runs, slower and the same)."""
        script = drivers / "scripts" / "install_requirements.py"
        text = script.read_text() if script.is_file() else ""
        if SDK_PIP_CALL in text:
            script.write_text(text.replace(SDK_PIP_CALL, f'[python_executable, {str(CONTAINER_PIP)!r}, "install"'))

    def command(self, entrypoint: list[str], arguments: list[str], where: str = "AppSpecification") -> list[str]:
        """The command line, /opt/ml rewritten; an /opt/ml path in it that leads outside is ContainerPathError
        (where: the field that holds ContainerEntrypoint and ContainerArguments)."""
        self.confine(list(entrypoint), f"{where}.ContainerEntrypoint")
        self.confine(list(arguments), f"{where}.ContainerArguments")
        argv = self.rewrite([*entrypoint, *arguments])
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        return argv

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        """python3, pip and torchrun resolve to this interpreter; pip installs nothing new (and refuses what the
        job's image could not install)."""
        self._shims()
        import os

        return {"PATH": f"{self.bin}:{os.environ.get('PATH', '')}", "PIP_NO_INDEX": "1",
                "SAGEPIPE_PIP_VERDICTS": str(self.pip_verdicts),
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1", **self.image, **extra}

    def _shims(self) -> None:
        self.bin.mkdir(parents=True, exist_ok=True)
        pip = f'"{CONTAINER_PIP}"'  # pip itself unless all is installed already
        for name, target in (("python3", ""), ("python", ""), ("pip", pip), ("pip3", pip),
                             ("torchrun", "-m torch.distributed.run")):
            shim = self.bin / name
            if not shim.exists():
                shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {target} "$@"\n')
                shim.chmod(0o755)


class ContainerPathError(StepFailed):
    """A definition's value that would put a container's folder (or a file the job reads) outside its container."""

    def __init__(self, step: str, field: str, value: Any, why: str):
        super().__init__(f"step {step!r}: {field} {value!r} {why}; name a path under /opt/ml without '..' (the "
                         "emulator keeps each job inside its container folder, as SageMaker keeps it in its container)")
        self.step, self.field, self.value = step, field, value
