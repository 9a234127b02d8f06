"""Smoke test of a deployed endpoint (the deploy pipeline's CodeBuild step): a few real claims, sane answers.

    python infra/smoke_test.py fraud-detection-staging [--region us-east-1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model_code"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint")
    parser.add_argument("--region", default=None)
    args = parser.parse_args()
    import boto3
    from generate_data import claim_records
    from fraud_schema import RAW_FEATURES

    records = json.loads(claim_records(20, seed=3)[RAW_FEATURES].to_json(orient="records"))
    runtime = boto3.client("sagemaker-runtime", region_name=args.region)
    response = runtime.invoke_endpoint(EndpointName=args.endpoint, ContentType="application/json",
                                       Accept="application/json", Body=json.dumps(records))
    predictions = json.loads(response["Body"].read())["predictions"]
    problems = []
    if len(predictions) != len(records):
        problems.append(f"{len(predictions)} predictions for {len(records)} claims")
    if not all(0.0 <= p["fraud_probability"] <= 1.0 and p["fraud"] in (0, 1) for p in predictions):
        problems.append(f"predictions out of range: {predictions[:3]}")
    if problems:
        print(f"smoke test of {args.endpoint} FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"smoke test of {args.endpoint} passed: {len(predictions)} predictions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
