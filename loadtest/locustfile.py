"""Locust load test of the local endpoint: single claims and 100-claim batches, raw fields as JSON.

    make loadtest                         # headless, 30 s, 16 users, against `sagepipe serve` on :8080
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080   # with Locust's web UI
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from locust import FastHttpUser, between, task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model_code"))
from generate_data import claim_records  # noqa: E402
from fraud_schema import RAW_FEATURES  # noqa: E402

ROWS = json.loads(claim_records(500, seed=11)[RAW_FEATURES].to_json(orient="records"))


class ClaimScorer(FastHttpUser):
    wait_time = between(0, 0.01)

    @task(9)
    def one_claim(self) -> None:
        self._post([random.choice(ROWS)], "single")

    @task(1)
    def batch_of_claims(self) -> None:
        start = random.randrange(0, len(ROWS) - 100)
        self._post(ROWS[start:start + 100], "batch of 100")

    def _post(self, records: list[dict], name: str) -> None:
        with self.client.post("/invocations", data=json.dumps(records), name=name, catch_response=True,
                              headers={"Content-Type": "application/json"}) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
            elif len(json.loads(response.text)["predictions"]) != len(records):
                response.failure("wrong number of predictions")
