"""Generate synthetic auto-insurance claims and customers shaped like the workshop data set.

Writes claims.csv and customers.csv with the reference columns, categories and quirks ("N/A" for
non-collision incidents, "None" as an authorities category, the misspelt "Unkown", "25/50" strings).
Fraud follows a seeded logistic model of the features, so a model can learn it.

    python model_code/generate_data.py --rows 5000 --seed 42 --out data/
    python model_code/generate_data.py --rows 200 --joined --out examples/   # also claims_joined.csv

claims_joined.csv is what scoring takes (`sagepipe transform`): each claim joined with its customer, with
policy_id and without the fraud label.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

CHUNK = 500_000


def _pick(rng: np.random.Generator, values: list, weights: list[float], n: int) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return rng.choice(np.asarray(values, dtype=object), size=n, p=p / p.sum())


def _customers(rng: np.random.Generator, ids: np.ndarray) -> pd.DataFrame:
    n = len(ids)
    states = _pick(rng, ["CA", "WA", "AZ", "OR", "NV", "ID"], [627, 121, 108, 73, 44, 27], n)
    zip_ranges = {"CA": (90001, 96162), "WA": (98001, 99403), "AZ": (85001, 86556),
                  "OR": (97001, 97920), "NV": (88901, 89883), "ID": (83201, 83877)}
    zips = np.empty(n, dtype=np.int64)
    for state, (low, high) in zip_ranges.items():
        mask = states == state
        zips[mask] = rng.integers(low, high + 1, mask.sum())
    return pd.DataFrame({
        "policy_id": ids,
        "customer_age": np.clip(rng.normal(44, 13.5, n), 18, 70).astype(np.int64),
        "months_as_customer": np.clip(rng.gamma(1.9, 52, n), 1, 495).astype(np.int64),
        "num_claims_past_year": _pick(rng, [0, 1, 2, 3, 4, 5, 6], [933, 54, 9, 3.4, .6, .4, .4], n).astype(np.int64),
        "num_insurers_past_5_years": _pick(rng, [1, 2, 3, 4, 5], [772, 112, 62, 37, 17], n).astype(np.int64),
        "policy_state": states,
        "policy_deductable": _pick(rng, [750, 800, 850, 900, 950, 1000, 1050, 1100],
                                   [990, 5.6, 1.8, .6, 1, .2, .4, .4], n).astype(np.int64),
        "policy_annual_premium": (3000 - 50 * np.minimum(rng.poisson(1.5, n), 16)).astype(np.int64),
        "policy_liability": _pick(rng, ["25/50", "15/30", "30/60", "100/200"], [340, 326, 227, 107], n),
        "customer_zip": zips,
        "customer_gender": _pick(rng, ["Male", "Female", "Unkown", "Other"], [456, 442, 84, 18], n),
        "customer_education": _pick(rng, ["Bachelor", "High School", "Advanced Degree", "Associate",
                                          "Below High School"], [442, 253, 190, 95, 20], n),
        "auto_year": (2020 - np.minimum(rng.gamma(1.6, 2.7, n), 19)).astype(np.int64),
    })


def _claims(rng: np.random.Generator, customers: pd.DataFrame) -> pd.DataFrame:
    n = len(customers)
    incident = _pick(rng, ["Collision", "Break-in", "Theft"], [854, 97, 49], n)
    collision = incident == "Collision"
    relationship = np.where(collision, _pick(rng, ["Self", "Spouse", "Child", "Other"], [80, 10, 5.3, 4.7], n), "N/A")
    collision_type = np.where(collision, _pick(rng, ["Front", "Rear", "Side"], [494, 259, 248], n), "N/A")
    severity = _pick(rng, ["Minor", "Major", "Totaled"], [42, 34, 24], n)
    authorities = _pick(rng, ["Police", "None", "Ambulance", "Fire"], [700, 242, 29, 27], n)
    report_p = np.where(authorities == "Police", 0.55, 0.12)
    police_report = np.where(rng.random(n) < report_p, "Yes", "No")
    injuries = _pick(rng, [0, 1, 2, 3, 4], [674, 200, 50, 41, 34], n).astype(np.int64)
    injury_claim = (100 * np.round((300 + rng.lognormal(9.6, 0.8, n) * (0.4 + injuries)) / 100)).astype(np.int64)
    injury_claim = np.minimum(injury_claim, 576300)
    severity_scale = np.select([severity == "Minor", severity == "Major"], [0.6, 1.1], 1.6)
    vehicle_claim = np.clip(rng.gamma(3.0, 5800, n) * severity_scale, 1000, 51051.6257)
    month = rng.integers(1, 13, n)
    hour = np.clip(np.round(rng.normal(11.8, 5.3, n)), 0, 23).astype(np.int64)
    witnesses = _pick(rng, [0, 1, 2, 3, 4, 5], [520, 222, 162, 66, 21, 7], n).astype(np.int64)
    logit = (
        -6.5
        + 1.8 * (customers["num_claims_past_year"].to_numpy() > 0)
        + 0.6 * (customers["num_insurers_past_5_years"].to_numpy() - 1)
        + 1.4 * (authorities == "None")
        + 1.0 * (police_report == "No")
        + 1.2 * (severity == "Major")
        + 1.3 * (customers["months_as_customer"].to_numpy() < 24)
        + 1.0 * (customers["customer_age"].to_numpy() < 25)
        + 1.4 * (injury_claim > 60000)
        + 0.5 * (hour <= 4)
        + 0.4 * (witnesses == 0)
        + rng.normal(0, 0.4, n)
    )
    fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame({
        "policy_id": customers["policy_id"].to_numpy(),
        "driver_relationship": relationship, "incident_type": incident, "collision_type": collision_type,
        "incident_severity": severity, "authorities_contacted": authorities,
        "num_vehicles_involved": np.where(collision, _pick(rng, [1, 2, 3, 4, 5, 6], [200, 460, 280, 52, 6, 1], n), 1)
        .astype(np.int64),
        "num_injuries": injuries, "num_witnesses": witnesses, "police_report_available": police_report,
        "injury_claim": injury_claim, "vehicle_claim": vehicle_claim, "total_claim_amount": injury_claim + vehicle_claim,
        "incident_month": month, "incident_day": rng.integers(1, 29, n) + (rng.random(n) < 0.1) * rng.integers(0, 3, n),
        "incident_dow": _pick(rng, [0, 1, 2, 3, 4, 5, 6], [847, 868, 754, 758, 802, 469, 502], n).astype(np.int64),
        "incident_hour": hour, "fraud": fraud,
    })


def claim_records(rows: int, seed: int) -> pd.DataFrame:
    """Claims joined with their customers, in memory: the raw fields a prediction request carries."""
    rng = np.random.default_rng(seed)
    customers = _customers(rng, np.arange(1, rows + 1, dtype=np.int64))
    return _claims(rng, customers).merge(customers, on="policy_id")


JOINED = "claims_joined.csv"


def generate(rows: int, seed: int, out: Path, joined: bool = False) -> None:
    """Write claims.csv and customers.csv into out (and claims_joined.csv when joined), in chunks so memory
    stays flat; the same seed gives the same rows with or without joined."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    claims_path, customers_path = out / "claims.csv", out / "customers.csv"
    for start in range(0, rows, CHUNK):
        ids = np.arange(start + 1, min(rows, start + CHUNK) + 1, dtype=np.int64)
        customers = _customers(rng, ids)
        claims = _claims(rng, customers)
        first = start == 0
        claims.to_csv(claims_path, mode="w" if first else "a", header=first, index=False)
        customers.to_csv(customers_path, mode="w" if first else "a", header=first, index=False)
        if joined:
            scoring = claims.drop(columns=["fraud"]).merge(customers, on="policy_id")
            scoring.to_csv(out / JOINED, mode="w" if first else "a", header=first, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--joined", action="store_true",
                        help=f"also write {JOINED}: claims joined with customers, no label (a scoring file)")
    args = parser.parse_args()
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    generate(args.rows, args.seed, args.out, args.joined)
    extra = f" and {args.out}/{JOINED}" if args.joined else ""
    print(f"wrote {args.rows} rows to {args.out}/claims.csv, {args.out}/customers.csv{extra}")


if __name__ == "__main__":
    main()
