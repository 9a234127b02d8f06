"""A batch transform container's work, run as its own process: `python3 batch.py SPEC.json` (stdlib only).

It loads the model the way SageMaker's inference toolkit does (SAGEMAKER_PROGRAM from
SAGEMAKER_SUBMIT_DIRECTORY, `model_fn(model_dir)`), then for every input file sends its records to
`input_fn` / `predict_fn` / `output_fn`: split by line (SplitType Line), several records per request up to
MaxPayloadInMB (MultiRecord) or one each (SingleRecord), or the whole file (SplitType None). Responses are
written to `<file>.out`, a newline after each one when AssembleWith is Line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator


def main(spec_file: str) -> int:
    spec = json.loads(Path(spec_file).read_text())
    handlers = _load_handlers()
    model = handlers.model_fn(spec["model_dir"])
    inputs, outputs = Path(spec["inputs"]), Path(spec["outputs"])
    files = sorted(p for p in inputs.rglob("*") if p.is_file())
    for file in files:
        target = outputs / f"{file.relative_to(inputs)}.out"
        target.parent.mkdir(parents=True, exist_ok=True)
        records = 0
        with open(file, "rb") as source, open(target, "wb") as sink:
            for first, batch in _requests(source, spec):
                try:
                    data = handlers.input_fn(b"".join(batch), spec["content_type"])
                    result = handlers.output_fn(handlers.predict_fn(data, model), spec["accept"])
                except Exception as exc:  # the container answers 4xx/5xx: SageMaker fails the job
                    print(f"{file.name}: records {first + 1}-{first + len(batch)}: {type(exc).__name__}: {exc}",
                          file=sys.stderr)
                    return 1
                body = result[0] if isinstance(result, tuple) else result
                body = body.encode() if isinstance(body, str) else body
                sink.write(body)
                if spec["assemble_with"] == "Line" and not body.endswith(b"\n"):
                    sink.write(b"\n")
                records += len(batch)
        print(f"{file.name}: {records} record(s) -> {target.name}")
    print(f"transformed {len(files)} file(s)")
    return 0


def _load_handlers() -> Any:
    code = Path(os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY", "/opt/ml/model/code"))
    program = os.environ.get("SAGEMAKER_PROGRAM", "inference.py")
    sys.path.insert(0, str(code))
    spec = importlib.util.spec_from_file_location(Path(program).stem, code / program)
    if spec is None or not (code / program).is_file():
        raise SystemExit(f"the model has no {program} in {code} (SAGEMAKER_PROGRAM, SAGEMAKER_SUBMIT_DIRECTORY)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _requests(source: Any, spec: dict[str, Any]) -> Iterator[tuple[int, list[bytes]]]:
    """(index of the first record, the records of one request)."""
    if spec["split"] != "Line":
        data = source.read()
        if data:
            yield 0, [data]
        return
    batch: list[bytes] = []
    size, first, index = 0, 0, 0
    for line in source:
        if not line.strip():
            continue
        if batch and (spec["strategy"] == "SingleRecord" or size + len(line) > spec["max_payload_bytes"]):
            yield first, batch
            batch, size, first = [], 0, index
        batch.append(line if line.endswith(b"\n") else line + b"\n")
        size += len(line)
        index += 1
    if batch:
        yield first, batch


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
