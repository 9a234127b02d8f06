"""CacheConfig.ExpireAfter: the ISO 8601 forms the SDK and the developer guide use, as the service takes them."""

from __future__ import annotations

import pytest

from pipelines.values import duration_seconds
from pipelines.sagemaker.definition_checks import check_definition

HOUR, DAY = 3600, 86400


@pytest.mark.parametrize("text, seconds", [
    ("P30D", 30 * DAY), ("PT12H", 12 * HOUR), ("P1DT12H", 36 * HOUR), ("P4W", 28 * DAY), ("P4DT12H", 108 * HOUR),
    ("T12H", 12 * HOUR), ("p30d", 30 * DAY), ("pt1h", HOUR), ("t30m", 30 * 60), ("PT90S", 90), ("P1M", 30 * DAY),
    ("P1Y", 365 * DAY), ("PT0.5H", HOUR / 2),
    # the developer guide's own examples leave the P out: "30d", "5y", "T16m", "30dT5h"
    ("30d", 30 * DAY), ("30D", 30 * DAY), ("5y", 5 * 365 * DAY), ("T16m", 16 * 60), ("30dT5h", 30 * DAY + 5 * HOUR)])
def test_the_forms_the_sdk_and_the_guide_use(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "T", "12H", "P1DT", "P1H", "TP1D", " P1D", "P-1D", "30 days"])
def test_what_is_not_a_duration_is_a_clear_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="is not an ISO 8601 duration"):
        duration_seconds(text)


def test_the_definition_checks_accept_the_sdk_forms_and_name_a_bad_one() -> None:
    def definition(expire: str) -> dict:
        return {"Version": "2020-12-01", "Parameters": [], "Steps": [
            {"Name": "fail", "Type": "Fail", "CacheConfig": {"Enabled": True, "ExpireAfter": expire},
             "Arguments": {"ErrorMessage": "no"}}]}

    for fine in ("T12H", "p30d", "P1DT12H", "P4W"):
        assert check_definition(definition(fine)) == [], fine
    [(step, path, message)] = check_definition(definition("12 hours"))
    assert (step, path) == ("fail", "CacheConfig.ExpireAfter")
    assert message.startswith("'12 hours' is not an ISO 8601 duration") and "PT12H" in message
