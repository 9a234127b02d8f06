"""On SageMaker a job's inputs are copies: every input in a compiled definition is an S3 download into the
container (File mode, or FastFile's read-only view), and no output folder lies on an input folder, so nothing a
script writes into its inputs is uploaded back over what it read (the local runner and emulate: the tests of the
same name in tests/local and tests/emulate)."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import pytest

from pipelines.sagemaker.definition_checks import all_steps
from tests.conftest import GOLDEN

DEFINITIONS = sorted(GOLDEN.glob("*.json"))
COPIES = ("File", "FastFile")  # a download, or a read-only view of the objects


def _overlap(a: str, b: str) -> bool:
    pa, pb = PurePosixPath(a), PurePosixPath(b)
    return pa == pb or pa in pb.parents or pb in pa.parents


@pytest.mark.parametrize("path", DEFINITIONS, ids=[p.name for p in DEFINITIONS])
def test_every_input_of_a_compiled_definition_reaches_its_job_as_a_copy(path) -> None:
    definition = json.loads(path.read_text())
    seen = 0
    for step in all_steps(definition["Steps"]):
        args = step.get("Arguments") or {}
        if step["Type"] == "Processing":
            inputs = [i["S3Input"] for i in args.get("ProcessingInputs") or []]
            outputs = [o["S3Output"]["LocalPath"] for o in (args.get("ProcessingOutputConfig") or {}).get("Outputs", [])]
            for item in inputs:
                seen += 1
                assert item.get("S3InputMode", "File") in COPIES, (step["Name"], item)
                assert not [o for o in outputs if _overlap(o, item["LocalPath"])], (step["Name"], item["LocalPath"])
        specs = [args] if step["Type"] == "Training" else [args.get("TrainingJobDefinition") or {}] \
            if step["Type"] == "Tuning" else []
        for spec in specs:
            mode = (spec.get("AlgorithmSpecification") or {}).get("TrainingInputMode", "File")
            for channel in spec.get("InputDataConfig") or []:
                seen += 1
                assert channel.get("InputMode", mode) in COPIES, (step["Name"], channel["ChannelName"])
                assert "S3DataSource" in channel["DataSource"], (step["Name"], channel["ChannelName"])
    assert seen, f"{path.name}: no inputs read"
