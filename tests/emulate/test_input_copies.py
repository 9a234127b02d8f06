"""Under emulate, as on SageMaker, a job's inputs are copies downloaded from (emulated) S3: a script that writes,
appends to or deletes what lies in its input folder changes neither the user's files (uploaded from a --param
path) nor what the next job reading the same input gets."""

from __future__ import annotations

import json
from pathlib import Path

from tests.emulate.test_emulate import BUCKET, _emulate, _output, _processing, aws  # noqa: F401  (fixture)
from tests.sagemaker.test_aws import moto_server  # noqa: F401  (fixture)

VANDAL = """import json, pathlib
source = pathlib.Path("/opt/ml/processing/input/source")
with open(source / "keep.txt", "a") as f:
    f.write("appended by the job\\n")
(source / "gone.txt").unlink()
(source / "sub" / "nested.txt").write_text("changed")
(source / "link.txt").write_text("written through the link")
(source / "new.txt").write_text("new")
(pathlib.Path("/opt/ml/processing/input/code") / "vandal.py").write_text("# emptied by the job")
out = pathlib.Path("/opt/ml/processing/output/out")
(out / "seen.json").write_text(json.dumps(sorted(p.name for p in source.iterdir())))
"""
READ = """import json, pathlib
source = pathlib.Path("/opt/ml/processing/input/source")
files = {str(p.relative_to(source)): p.read_text() for p in sorted(source.rglob("*")) if p.is_file()}
pathlib.Path("/opt/ml/processing/output/out/files.json").write_text(json.dumps(files))
"""
FILES = {"keep.txt": "precious\n", "gone.txt": "still here", "sub/nested.txt": "nested"}


def _source_input() -> dict:
    return {"InputName": "source", "S3Input": {"S3Uri": {"Get": "Parameters.input_data"}, "S3DataType": "S3Prefix",
                                               "LocalPath": "/opt/ml/processing/input/source", "S3InputMode": "File"}}


def _contents(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_job_that_writes_into_its_inputs_changes_nothing_of_the_users(aws: dict, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name, text in FILES.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(text)
    (tmp_path / "outside.txt").write_text("outside the data folder")
    (data / "link.txt").symlink_to(tmp_path / "outside.txt")
    before = {**_contents(data), "../outside.txt": (tmp_path / "outside.txt").read_text()}
    for name, text in (("vandal.py", VANDAL), ("read.py", READ)):
        aws["s3"].put_object(Bucket=BUCKET, Key=f"code/{name}", Body=text.encode())
    vandal = _processing("vandal", "vandal.py", [], [_source_input()], [_output("out", f"s3://{BUCKET}/copies/vandal")],
                         cache=False)
    read = _processing("read", "read.py", [], [_source_input()], [_output("out", f"s3://{BUCKET}/copies/read")],
                       cache=False)
    read["DependsOn"] = ["vandal"]
    definition = tmp_path / "copies.json"
    definition.write_text(json.dumps({"Version": "2020-12-01", "Metadata": {}, "Steps": [vandal, read], "Parameters": [
        {"Name": "input_data", "Type": "String", "DefaultValue": "s3://nowhere/data"}]}))

    code, _, err = _emulate(tmp_path / "home", "--definition", str(definition), "--param", f"input_data={data}")
    assert code == 0, err
    assert {**_contents(data), "../outside.txt": (tmp_path / "outside.txt").read_text()} == before
    assert (data / "link.txt").is_symlink()
    seen = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key="copies/vandal/seen.json")["Body"].read())
    assert seen == ["keep.txt", "link.txt", "new.txt", "sub"]  # the job saw its own copy change
    files = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key="copies/read/files.json")["Body"].read())
    assert files == {**FILES, "link.txt": "outside the data folder"}  # the next job gets the input as uploaded
    code_now = aws["s3"].get_object(Bucket=BUCKET, Key="code/vandal.py")["Body"].read().decode()
    assert code_now == VANDAL  # nor does writing into the code input change the uploaded code
    containers = list((tmp_path / "home").rglob("processing/input/source"))
    assert containers and all(not c.is_symlink() for c in containers)
