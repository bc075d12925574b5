"""The failure policy of image datasets: stop, or skip and say so."""

from __future__ import annotations

import pytest

from fracrisk.data.image_failures import FailurePolicy, ImageFailure, failure_table
from fracrisk.exceptions import DataWarning, NoUsableImagesError
from fracrisk.imaging.io import ImageReadError


def _failure(i: int) -> ImageFailure:
    return ImageFailure(f"r{i}", f"p{i}", "hip_ct_path", f"ct{i}.nii.gz", "truncated")


def test_raise_names_row_patient_column_and_file():
    policy = FailurePolicy("raise")
    assert policy.stops
    with pytest.raises(ImageReadError) as caught:
        policy.raise_first(_failure(3))
    message = str(caught.value)
    for part in ("ct3.nii.gz", "'r3'", "'p3'", "'hip_ct_path'", "truncated", "on_error='skip'"):
        assert part in message


def test_skip_keeps_every_failure_in_table_order_and_warns_once():
    policy = FailurePolicy("skip")
    for position in (5, 1, 3, 0):
        policy.add(position, _failure(position))
    with pytest.warns(DataWarning, match=r"4 of 10 rows left out.*and 1 more") as caught:
        failures = policy.finish(10, "drr")
    assert len(caught) == 1
    assert [f.row for f in failures] == ["r0", "r1", "r3", "r5"]
    table = failure_table(failures)
    assert list(table.columns) == ["row", "patient_id", "column", "path", "reason"]
    assert len(table) == 4


def test_no_row_left_is_an_error_that_carries_the_failures():
    policy = FailurePolicy("skip")
    policy.add(0, _failure(0))
    policy.add(1, _failure(1))
    with pytest.warns(DataWarning), pytest.raises(NoUsableImagesError) as caught:
        policy.finish(2, "patches")
    assert [f.row for f in caught.value.failures] == ["r0", "r1"]


def test_table_problems_stop_before_any_image_under_raise():
    problem = [(2, _failure(2))]
    with pytest.raises(ValueError, match="1 row\\(s\\) with unusable keypoints"):
        FailurePolicy("raise").refuse_table_problems(problem, "unusable keypoints")
    skip = FailurePolicy("skip")
    skip.refuse_table_problems(problem, "unusable keypoints")
    assert list(skip.failures) == [2]


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="'raise' or 'skip'"):
        FailurePolicy("ignore")
