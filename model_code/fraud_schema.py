"""The raw claim and customer columns: names, kinds and categories (shared by every script)."""

CLAIMS_COLUMNS = [
    "policy_id", "driver_relationship", "incident_type", "collision_type", "incident_severity",
    "authorities_contacted", "num_vehicles_involved", "num_injuries", "num_witnesses",
    "police_report_available", "injury_claim", "vehicle_claim", "total_claim_amount", "incident_month",
    "incident_day", "incident_dow", "incident_hour", "fraud",
]
CUSTOMERS_COLUMNS = [
    "policy_id", "customer_age", "months_as_customer", "num_claims_past_year", "num_insurers_past_5_years",
    "policy_state", "policy_deductable", "policy_annual_premium", "policy_liability", "customer_zip",
    "customer_gender", "customer_education", "auto_year",
]
LABEL = "fraud"
KEY = "policy_id"
BOTH_CLASSES_RULE = ("preprocess requires both in every split "
                     "(expectation suite: join_and_split.min_positives_per_split / min_negatives_per_split)")


def one_class_only(labels, where: str) -> str | None:
    """'the <where> has N fraud=1 and M fraud=0 rows' when labels (a 0/1 array) lack a class, else None."""
    positives = int((labels == 1).sum())
    if 0 < positives < len(labels):
        return None
    return f"the {where} has {positives:,} {LABEL}=1 and {len(labels) - positives:,} {LABEL}=0 rows"

CATEGORICAL = [
    "driver_relationship", "incident_type", "collision_type", "incident_severity", "authorities_contacted",
    "police_report_available", "policy_state", "customer_gender", "customer_education",
]
# policy_liability ("25/50") becomes two numbers: per-person and per-accident limits, in $1,000s.
LIABILITY = "policy_liability"
NUMERIC = [
    "num_vehicles_involved", "num_injuries", "num_witnesses", "injury_claim", "vehicle_claim",
    "total_claim_amount", "incident_month", "incident_day", "incident_dow", "incident_hour", "customer_age",
    "months_as_customer", "num_claims_past_year", "num_insurers_past_5_years", "policy_deductable",
    "policy_annual_premium", "customer_zip", "auto_year",
]
# The raw fields a prediction request carries, in order (everything but the key and the label).
RAW_FEATURES = [c for c in CLAIMS_COLUMNS + CUSTOMERS_COLUMNS if c not in (KEY, LABEL)]

# How the reference CSVs spell a missing value: "N/A" is missing, "None" is a real category.
NA_VALUES = ["", "N/A"]
