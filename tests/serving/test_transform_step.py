"""`type: transform`: batch inference in a pipeline with the model's own handlers — locally the engine of
`sagepipe transform`, on SageMaker a ModelStep and a TransformStep, emulated with SageMaker's batch semantics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.errors import ConfigError
from pipelines.loader import load_pipeline
from tests.conftest import CHECKER, make_project, run_cli
from tests.tuning.test_tuning import INFERENCE, TRAIN, aws_env, moto_server  # noqa: F401  (fixtures)

PIPELINE = """
name: tiny-score
parameters:
  data: {type: string, default: data}
  score: {type: string, default: ""}
steps:
  - name: train
    type: training
    code: scripts/train.py
    inputs: {train: "${params.data}"}
    hyperparameters: {x: 0.3, depth: 2}
  - {name: register, type: register, model: "${steps.train.outputs.model}", model_group: tiny}
  - name: has-data
    type: condition
    condition: {left: "${params.score}", op: "!=", right: ""}
    if_true: [score]
  - name: score
    type: transform
    model: ${steps.train.outputs.model}
    input: ${params.score}
    resources: {instance_type: ml.m5.large, instance_count: 1}
"""
REGISTERED = """
  - name: score-registered
    type: transform
    depends_on: [register]
    model: tiny@1
    input: ${params.score}
"""
DEV = """
sagemaker: {region: us-east-1, role: "arn:aws:iam::123456789012:role/x", bucket: tiny-score-bucket}
parameters: {data: "s3://tiny-score-bucket/data/"}
"""


def project(folder: Path, pipeline: str = PIPELINE) -> Path:
    config = make_project(folder, "tiny-score", pipeline, {"dev": DEV}, (),
                          {"scripts/train.py": TRAIN, "scripts/inference.py": INFERENCE})
    (folder / "data").mkdir()
    (folder / "data" / "rows.csv").write_text("".join(f"{i}\n" for i in range(10)))
    claims = pd.DataFrame({"policy_id": [f"p{i:03d}" for i in range(250)][::-1],
                           "amount": [str(17 * i % 400) for i in range(250)], "age": [str(20 + i % 50) for i in range(250)],
                           "unused": ["x"] * 250})
    scores = folder / "scores"
    scores.mkdir()
    claims.to_csv(scores / "with-header.csv", index=False)
    claims.head(40).to_parquet(scores / "more.parquet", index=False)
    claims[["amount", "age"]].to_csv(folder / "headerless.csv", index=False, header=False)
    return config


def test_a_model_must_be_a_model_output_or_a_registered_version(tmp_path: Path) -> None:
    config = project(tmp_path / "p", PIPELINE.replace("model: ${steps.train.outputs.model}\n    input",
                                                      "model: models/latest\n    input"))
    with pytest.raises(ConfigError) as caught:
        load_pipeline(config)
    assert "tiny-score.yaml:" in str(caught.value)
    assert "'models/latest' is not a model: use a training or tuning step's model output" in str(caught.value)


def test_local_transform_matches_sagepipe_transform_row_for_row(tmp_path: Path) -> None:
    config = project(tmp_path / "p", PIPELINE + REGISTERED)
    home, folder = tmp_path / "home", tmp_path / "p"
    done = run_cli("run", str(config), "--param", f"score={folder / 'scores'}", "--json", home=home, cwd=folder)
    assert done.returncode == 0, done.stderr
    run = home / "runs" / json.loads(done.stdout)["run_id"]
    cli = tmp_path / "cli.csv"  # the same model (tiny@1 is train's), scored by hand once for both steps
    by_hand = run_cli("transform", "tiny@1", str(folder / "scores" / "with-header.csv"), str(cli), home=home,
                      cwd=folder)
    assert by_hand.returncode == 0, by_hand.stderr
    for step in ("score", "score-registered"):
        outputs = run / step / "output" / "predictions"
        assert sorted(p.name for p in outputs.iterdir()) == ["more.csv", "with-header.csv"]
        assert (outputs / "with-header.csv").read_bytes() == cli.read_bytes()  # same rows, same order, same values
    scored = pd.read_csv(run / "score" / "output" / "predictions" / "with-header.csv")
    assert len(scored) == 250 and scored["policy_id"].tolist() == [f"p{i:03d}" for i in range(250)][::-1]
    assert len(pd.read_csv(run / "score" / "output" / "predictions" / "more.csv")) == 40
    # the headerless form SageMaker's batch transform takes scores the same rows the same way
    again = run_cli("run", str(config), "--param", f"score={folder / 'headerless.csv'}", "--json", home=home,
                    cwd=folder)
    assert again.returncode == 0, again.stderr
    headerless = pd.read_csv(home / "runs" / json.loads(again.stdout)["run_id"] / "score" / "output" / "predictions" /
                             "headerless.csv")
    assert headerless["fraud_probability"].tolist() == scored["fraud_probability"].tolist()


def test_a_bad_input_fails_the_step_with_the_handlers_message(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    config = project(folder)
    pd.DataFrame({"amount": ["1"]}).to_csv(folder / "bad.csv", index=False)
    done = run_cli("run", str(config), "--param", f"score={folder / 'bad.csv'}", "--json", home=tmp_path / "home",
                   cwd=folder)
    assert done.returncode == 1
    assert "scoring bad.csv with the model of step 'train' failed" in done.stderr
    assert "missing column age" in done.stderr
    empty = run_cli("run", str(config), "--param", f"score={folder / 'nothing-here'}", home=tmp_path / "home",
                    cwd=folder)
    assert empty.returncode == 1 and "nothing-here does not exist" in empty.stdout


def test_compiled_transform_is_a_model_step_and_a_transform_step(tmp_path: Path) -> None:
    from pipelines.sagemaker.compiler import compile_pipeline
    from pipelines.sagemaker.definition_checks import all_steps

    compiled = compile_pipeline(load_pipeline(project(tmp_path / "p"), "dev"))
    steps = {s["Name"]: s for s in all_steps(compiled.definition["Steps"])}
    branch = [s["Name"] for s in steps["has-data"]["Arguments"]["IfSteps"]]
    assert branch == ["score-model", "score"]  # both inside the condition's branch
    model = steps["score-model"]
    assert model["Type"] == "Model"
    container = model["Arguments"]["PrimaryContainer"]
    assert container["ModelDataUrl"] == {"Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"}
    assert container["Image"].endswith("/pytorch-inference:2.6.0-cpu-py312")
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"  # as the register step serves it
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    transform = steps["score"]
    args = transform["Arguments"]
    assert transform["Type"] == "Transform" and args["ModelName"] == {"Get": "Steps.score-model.ModelName"}
    assert args["TransformInput"] == {"ContentType": "text/csv", "SplitType": "Line", "DataSource": {
        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": {"Get": "Parameters.score"}}}}
    assert args["TransformOutput"]["AssembleWith"] == "Line" and args["TransformOutput"]["Accept"] == "text/csv"
    assert args["TransformOutput"]["S3OutputPath"]["Std:Join"]["Values"][-2:] == ["score", "predictions"]
    assert args["TransformResources"] == {"InstanceCount": 1, "InstanceType": "ml.m5.large"}
    if CHECKER.exists():
        path = tmp_path / "tiny-score.json"
        path.write_text(compiled.json())
        done = subprocess.run([sys.executable, str(CHECKER), str(path)], capture_output=True, text=True)
        assert done.returncode == 0 and "0 error(s) OK" in done.stdout, done.stdout
    registered = project(tmp_path / "q", PIPELINE + REGISTERED)
    refused = run_cli("compile", str(registered), "--env", "dev", home=tmp_path / "home", cwd=tmp_path / "q")
    assert refused.returncode == 2 and "names a version in the local registry" in refused.stderr


def test_emulated_transform_runs_the_models_handlers_over_the_lines(aws_env: str, tmp_path: Path) -> None:
    folder = tmp_path / "p"
    config = project(folder)
    home = tmp_path / "home"
    params = ["--param", f"data={folder / 'data'}", "--param", f"score={folder / 'headerless.csv'}"]
    done = run_cli("emulate", str(config), "--env", "dev", *params, "--json", home=home, cwd=folder)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    statuses = {s["name"]: s["status"] for s in summary["steps"]}
    assert statuses["score-model"] == statuses["score"] == "succeeded"
    import boto3

    s3 = boto3.client("s3")
    execution = summary["execution_arn"].rsplit("/", 1)[-1]
    key = f"tiny-score/{execution}/score/predictions/headerless.csv.out"
    lines = s3.get_object(Bucket="tiny-score-bucket", Key=key)["Body"].read().decode().splitlines()
    local = run_cli("run", str(config), "--param", f"score={folder / 'headerless.csv'}", "--json",
                    home=tmp_path / "local", cwd=folder)
    assert local.returncode == 0, local.stderr
    scored = pd.read_csv(tmp_path / "local" / "runs" / json.loads(local.stdout)["run_id"] / "score" / "output" /
                         "predictions" / "headerless.csv")
    assert len(lines) == len(scored) == 250  # one line out per line in, in order
    assert [float(line.split(",")[0]) for line in lines] == pytest.approx(scored["fraud_probability"].tolist(),
                                                                          abs=2e-6)
