"""The framework images the compiler emits, as data: what each job's container is before it installs anything.

A job on SageMaker runs in one of these images, with the image's Python and what the image preinstalls; the job
then installs its requirements file on top (steps/processing.py, steps/training.py). docs/containers.md is the
same table in words (a test holds the two together). Each record names its source: the image's Dockerfile (and
package pins) in its public container repository. `preinstalled` maps a distribution to its version in the
image; "" where the Dockerfile installs it unpinned (whatever was current when the image was built).

Nothing here imports the SageMaker SDK: `sagepipe validate` reads this table to check requirements without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

# What a step runs in when it names no image: (SDK framework, version, py_version, scope), as image_uris.retrieve
# takes them. Processing steps get the lean scikit-learn image; steps that train or load a model (training, tuning,
# evaluation) get the PyTorch training image, which has torch, torchrun and the OpenMP runtime LightGBM links to.
SKLEARN_1_9 = {"framework": "sklearn", "version": "1.9-0"}
PYTORCH_TRAINING_2_6 = {"framework": "pytorch", "version": "2.6.0", "py_version": "py312", "scope": "training"}
PYTORCH_INFERENCE_2_6 = {"framework": "pytorch", "version": "2.6.0", "py_version": "py312", "scope": "inference"}

DLC = "https://github.com/aws/deep-learning-containers/blob"
# Every SageMaker framework image today runs glibc 2.31 or newer (Ubuntu 20.04+, Amazon Linux 2023): what an image
# this table does not know is assumed to take.
UNKNOWN_GLIBC = "2.31"


@dataclass(frozen=True)
class Image:
    """One framework image: what the SDK calls it, what it is, and where that is written down."""

    key: str
    framework: str  # the SDK's framework name (image_uris.retrieve)
    version: str  # the SDK's version string
    scope: str | None  # training / inference; None: the one image serves both
    py_version: str  # the SDK's py_version
    repository: str  # the ECR repository the URI names
    python: str  # "3.12"
    os: str
    glibc: str  # "2.34": wheels tagged manylinux_2_34_x86_64 or older install
    preinstalled: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    used_by: str = ""
    aliases: tuple[str, ...] = ()  # other version strings the SDK accepts for it ("2.6" for "2.6.0")
    arch: str = "x86_64"

    @property
    def platform(self) -> str:
        """The newest wheel platform tag the image installs, e.g. manylinux_2_34_x86_64."""
        return f"manylinux_{self.glibc.replace('.', '_')}_{self.arch}"

    def pip_platforms(self) -> list[str]:
        """Every platform tag pip may pick for this image (pip expands no manylinux_2_X tag to older ones)."""
        major, minor = (int(part) for part in self.glibc.split("."))
        tags = [f"manylinux_{major}_{m}_{self.arch}" for m in range(minor, 4, -1)]
        return [*tags, f"manylinux2014_{self.arch}", f"linux_{self.arch}"]

    def describe(self) -> str:
        """`pytorch-training 2.6.0 (Python 3.12, manylinux_2_35_x86_64)`."""
        return f"{self.repository} {self.version} (Python {self.python}, {self.platform})"


IMAGES: dict[str, Image] = {image.key: image for image in (
    Image(
        key="sklearn-1.9-0", framework="sklearn", version="1.9-0", scope=None, py_version="py3",
        repository="sagemaker-scikit-learn", python="3.12", os="Amazon Linux 2023", glibc="2.34",
        preinstalled={"scikit-learn": "1.9.0", "numpy": "2.5.1", "scipy": "1.18.0", "pandas": "2.2.3",
                      "pyarrow": "25.0.0", "PyYAML": "6.0.3", "boto3": "1.43.46", "requests": "2.33.0",
                      "sagemaker-training": "4.8.0", "sagemaker-inference": "1.5.5"},
        source=f"{DLC}/2c080f67deef5fa8e75a1eb3373dd97b5c83d8ec/docker/sklearn/1.9-0/Dockerfile "
               "(pins: pyproject.toml beside it)",
        used_by="processing steps (default)"),
    Image(
        key="pytorch-training-2.6.0-py312", framework="pytorch", version="2.6.0", scope="training",
        py_version="py312", repository="pytorch-training", python="3.12", os="Ubuntu 22.04", glibc="2.35",
        preinstalled={"torch": "2.6.0+cpu", "torchvision": "0.21.0+cpu", "torchaudio": "2.6.0+cpu",
                      "accelerate": "1.4.0", "numpy": "", "scipy": "", "pandas": "", "scikit-learn": "",
                      "PyYAML": "", "boto3": "", "sagemaker-training": "", "sagemaker-pytorch-training": ""},
        source=f"{DLC}/d37aa99ede9e3a860554f05905f9a31110b5bcf5/pytorch/training/docker/2.6/py3/Dockerfile.cpu "
               "(pins: Dockerfile.sagemaker.cpu.core_packages.json beside it)",
        used_by="training, tuning and evaluation steps (default)", aliases=("2.6",)),
    Image(
        key="pytorch-inference-2.6.0-py312", framework="pytorch", version="2.6.0", scope="inference",
        py_version="py312", repository="pytorch-inference", python="3.12", os="Ubuntu 22.04", glibc="2.35",
        preinstalled={"torch": "2.6.0+cpu", "torchserve": "0.12.0", "torch-model-archiver": "0.12.0",
                      "sagemaker-pytorch-inference": "2.0.25", "numpy": "", "scipy": "", "pandas": "",
                      "scikit-learn": "", "boto3": ""},
        source=f"{DLC}/cb750ce35f671d995ae047dd36c8ef0a3d8008a8/pytorch/inference/docker/2.6/py3/Dockerfile.cpu "
               "(pins: Dockerfile.sagemaker.cpu.core_packages.json beside it)",
        used_by="register and transform steps: the serving container (default)", aliases=("2.6",)),
    # Images a step may still name (sagemaker.framework_image), known here so that compile tells what they lack.
    Image(
        key="sklearn-1.4-2-py312", framework="sklearn", version="1.4-2-py312", scope=None, py_version="py3",
        repository="sagemaker-scikit-learn", python="3.12", os="Ubuntu 24.04", glibc="2.39",
        preinstalled={"scikit-learn": "1.4.2", "numpy": "2.1.0", "pandas": "2.3.2", "pyarrow": "17.0.0",
                      "PyYAML": "6.0.1", "boto3": "1.28.57", "scipy": "", "sagemaker-training": "4.8.0"},
        source=f"{DLC}/e0ecedea6a1c56d6b5914f9cfb2fec5c548e67e0/docker/sklearn/1.4-2-py312/Dockerfile "
               "(pins: requirements.txt beside it)",
        used_by="none by default (sagemaker.framework_image may name it)"),
    Image(
        key="sklearn-1.4-2", framework="sklearn", version="1.4-2", scope=None, py_version="py3",
        repository="sagemaker-scikit-learn", python="3.10", os="Ubuntu 20.04", glibc="2.31",
        preinstalled={"scikit-learn": "1.4.2", "pyarrow": "17.0.0"},
        source="https://github.com/aws/sagemaker-scikit-learn-container/blob/ce9875dc599898859b287b9e833f0c7528b09d94/"
               "docker/1.4-2/base/Dockerfile.cpu (PYTHON_VERSION=3.10)",
        used_by="none by default (too old a Python for pandas 3 and scikit-learn 1.9)"),
    Image(
        key="sklearn-1.2-1", framework="sklearn", version="1.2-1", scope=None, py_version="py3",
        repository="sagemaker-scikit-learn", python="3.9", os="Ubuntu 20.04", glibc="2.31",
        preinstalled={"scikit-learn": "1.2.1", "pyarrow": "17.0.0"},
        source="https://github.com/aws/sagemaker-scikit-learn-container/blob/89c839708af6d17cf830e7f3b4b72babb12a06c5/"
               "docker/1.2-1/base/Dockerfile.cpu (PYTHON_VERSION=3.9)",
        used_by="none (the default until issue 25: too old a Python for pandas 3 and scikit-learn 1.9)"),
)}

_URI = re.compile(r"^(?:[^/]+/)?(?P<repository>[a-z0-9._-]+(?:/[a-z0-9._-]+)*):(?P<tag>[\w.-]+)$")


def markdown_table() -> str:
    """IMAGES as the table docs/containers.md shows (a test holds the doc to it), then each image's source."""
    rows = ["| image | SDK name (framework, version, py_version, scope) | Python | platform | OS | preinstalled "
            "(main packages) | used by |", "|---|---|---|---|---|---|---|"]
    for image in IMAGES.values():
        sdk = ", ".join(v for v in (image.framework, image.version, image.py_version, image.scope or "any") if v)
        packages = ", ".join(f"{name} {version}" if version else f"{name} (unpinned)"
                             for name, version in image.preinstalled.items())
        rows.append(f"| `{image.repository}:{image.version}` | {sdk} | {image.python} | {image.platform} | "
                    f"{image.os} | {packages} | {image.used_by} |")
    sources = [f"- `{image.repository}:{image.version}`: {image.source}" for image in IMAGES.values()]
    return "\n".join(rows) + "\n\nSources:\n\n" + "\n".join(sources) + "\n"


def find(framework: Mapping[str, Any]) -> Image | None:
    """The record for a framework image as a step names it ({framework, version, py_version, scope}), or None."""
    name, version = framework.get("framework"), str(framework.get("version"))
    for image in IMAGES.values():
        if image.framework != name or version not in (image.version, *image.aliases):
            continue
        if framework.get("py_version") not in (None, image.py_version):
            continue
        if image.scope is not None and (framework.get("scope") or "training") != image.scope:
            continue
        return image
    return None


def from_uri(uri: str) -> Image | None:
    """The record for an image URI (any account, region, processor), or None."""
    match = _URI.match(uri.strip())
    if not match:
        return None
    repository, tag = match["repository"].rsplit("/", 1)[-1], match["tag"]
    for image in IMAGES.values():
        for version in (image.version, *image.aliases) if image.repository == repository else ():
            rest = tag[len(version) + 1:].split("-") if tag.startswith(f"{version}-") else []
            # <version>-<cpu|gpu>-<py_version>[-...]: 2.6.0-cpu-py312, 2.6.0-gpu-py312-cu126-ubuntu22.04, 1.9-0-cpu-py3
            if rest[:1] in (["cpu"], ["gpu"]) and rest[1:2] == [image.py_version]:
                return image
    return None


def resolve(image: str | Mapping[str, Any] | Image) -> Image | None:
    """What is known of an image: its record (by key, URI or framework dict), else what its Python tag says
    (`py311` in a py_version or a URI's tag: Python 3.11 on a glibc 2.31 platform, nothing preinstalled), else None."""
    if isinstance(image, Image):
        return image
    if isinstance(image, str):
        known = IMAGES.get(image) or from_uri(image)
        tagged = re.search(r"(?:^|[-:])py3(\d{1,2})(?:$|-)", image.rsplit(":", 1)[-1]) if not known else None
        name = image
    else:
        known = find(image)
        tagged = re.fullmatch(r"py3(\d{1,2})", str(image.get("py_version", ""))) if not known else None
        name = " ".join(str(image[k]) for k in ("framework", "version", "py_version", "scope") if image.get(k))
    if known is not None:
        return known
    if tagged is None:
        return None
    return Image(key=name, framework="", version="", scope=None, py_version=f"py3{tagged[1]}", repository=name,
                 python=f"3.{tagged[1]}", os="unknown", glibc=UNKNOWN_GLIBC, used_by="not in this table")
