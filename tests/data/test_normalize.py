"""Values read as the user meant them: ids, epochs, time zones, propensities, arms, features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from uplift.data.log import ExperimentLog, read_frame, read_log
from uplift.data.normalize import check_week, order_id_kind
from uplift.exceptions import ConfigError, SchemaError


def frame(n: int = 120, **columns: object) -> pd.DataFrame:
    """A valid two-arm log of ``n`` orders; keyword columns replace or add columns."""
    rng = np.random.default_rng(0)
    base = pd.DataFrame(
        {
            "order_id": np.arange(1, n + 1),
            "arm": np.where(np.arange(n) % 2 == 0, "control", "sms"),
            "cancelled": rng.integers(0, 2, n),
            "basket": rng.integers(1, 5, n),
        }
    )
    for name, value in columns.items():
        base[name] = value
    return base


def log_of(data: pd.DataFrame) -> ExperimentLog:
    return ExperimentLog.from_frame(data, source="f.csv")


# ------------------------------------------------------------------ order ids


def test_integer_ids_written_as_floats_or_text_are_one_kind() -> None:
    ints = log_of(frame()).frame["order_id"]
    floats = log_of(frame(order_id=np.arange(1, 121, dtype=float))).frame["order_id"]
    text = log_of(frame(order_id=[f"{i}.0" for i in range(1, 121)])).frame["order_id"]
    for ids in (floats, text):
        pd.testing.assert_series_equal(ids, ints)
    assert order_id_kind(ints) == "integer"


def test_ids_with_leading_zeros_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "zeros.csv"
    frame(order_id=[f"{i:04d}" for i in range(1, 121)]).to_csv(path, index=False)
    ids = read_log(path).frame["order_id"]
    assert ids.iloc[0] == "0001"
    assert order_id_kind(ids) == "text"


def test_ids_equal_after_normalising_are_duplicates() -> None:
    ids = [str(i) for i in range(1, 120)] + ["1.0"]
    with pytest.raises(SchemaError, match=r"order_id has 1 duplicate id\(s\) \(e\.g\. 1\)"):
        log_of(frame(order_id=ids))


def test_fractional_ids_are_refused() -> None:
    ids = np.arange(1, 121, dtype=float)
    ids[3] = 4.5
    with pytest.raises(SchemaError, match=r"order_id holds numbers that are not whole ids.*4"):
        log_of(frame(order_id=ids))


# ------------------------------------------------------------------ time stamps

MONDAY = pd.Timestamp("2026-01-05 10:00:00")


@pytest.mark.parametrize(
    ("unit", "per_second"), [("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9)]
)
def test_epochs_are_read_in_the_unit_their_size_implies(unit: str, per_second: int) -> None:
    seconds = int(MONDAY.timestamp())
    log = log_of(frame(assigned_at=seconds * per_second))
    assert (log.frame["assigned_at"] == MONDAY).all()
    assert f"Unix epoch {unit}" in " ".join(log.notes)


def test_epochs_in_mixed_units_are_refused() -> None:
    seconds = np.full(120, int(MONDAY.timestamp()))
    seconds[7] *= 1000  # one row in milliseconds
    with pytest.raises(SchemaError, match=r"epoch s but some values fall outside.*row\(s\): 8"):
        log_of(frame(assigned_at=seconds))


def test_small_numbers_are_no_epoch() -> None:
    with pytest.raises(SchemaError, match=r"assigned_at holds numbers .* no epoch time"):
        log_of(frame(assigned_at=np.arange(120)))


def test_offsets_are_converted_to_utc_once_and_said() -> None:
    stamps = ["2026-01-05T01:30:00+02:00"] * 60 + ["2026-01-05 09:00:00"] * 60
    log = log_of(frame(assigned_at=stamps))
    assert log.frame["assigned_at"].iloc[0] == pd.Timestamp("2026-01-04 23:30:00")
    assert log.frame["assigned_at"].iloc[-1] == pd.Timestamp("2026-01-05 09:00:00")
    assert "60 time stamps with a zone or offset converted to UTC" in " ".join(log.notes)
    assert list(log.weeks().unique()) == ["2026-W01", "2026-W02"]


def test_zone_aware_columns_are_converted_to_utc() -> None:
    stamps = pd.Series(pd.date_range("2026-01-05", periods=120, freq="h", tz="Europe/Berlin"))
    log = log_of(frame(assigned_at=stamps))
    assert log.frame["assigned_at"].iloc[0] == pd.Timestamp("2026-01-04 23:00:00")
    assert "Europe/Berlin converted to UTC" in " ".join(log.notes)


# ------------------------------------------------------------------ propensities and arms


def test_vanishing_propensities_are_refused() -> None:
    p = np.full(120, 0.5)
    p[[2, 9]] = 1e-300
    with pytest.raises(SchemaError, match=r"propensity is below 0.0001 in 2 row\(s\): 3, 10"):
        log_of(frame(propensity=p))


def test_arms_differing_only_in_spaces_or_case_are_refused() -> None:
    arms = np.where(np.arange(120) % 3 == 0, "control", "sms").astype(object)
    arms[5] = "sms "
    with pytest.raises(SchemaError, match=r"differ only in case or spaces \('sms', 'sms '\)"):
        log_of(frame(arm=arms))
    arms[5] = "SMS"
    with pytest.raises(SchemaError, match=r"differ only in case or spaces \('SMS', 'sms'\)"):
        log_of(frame(arm=arms))


def test_one_padded_spelling_of_an_arm_is_stripped() -> None:
    arms = np.where(np.arange(120) % 2 == 0, "control", " sms ")
    assert log_of(frame(arm=arms)).treatment_arms == ("sms",)


# ------------------------------------------------------------------ features and names


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, b"\x00\x01"], ids=["list", "struct", "bytes"])
def test_nested_feature_values_are_refused_naming_the_column(value: object) -> None:
    column = pd.Series([value] * 120, dtype=object)
    with pytest.raises(
        SchemaError, match=r"column extra holds lists, structs or bytes.*--ignore extra"
    ):
        log_of(frame(extra=column))


def test_mixed_numbers_and_text_become_text() -> None:
    column = pd.Series([1, "a", 2.5] * 40, dtype=object)
    log = log_of(frame(extra=column))
    assert log.frame["extra"].tolist()[:3] == ["1", "a", "2.5"]


def test_names_equal_but_for_case_are_refused() -> None:
    with pytest.raises(SchemaError, match=r"column 'Basket' and 'basket' differ only in case"):
        log_of(frame(Basket=1.0))


def test_control_characters_in_names_are_refused() -> None:
    with pytest.raises(SchemaError, match=r"hold control characters"):
        log_of(frame(**{"a\nb": 1.0}))


def test_a_folder_given_as_a_file_is_named() -> None:
    with pytest.raises(SchemaError, match=r"is a folder, not a file"):
        read_frame(Path(__file__).parent)


# ------------------------------------------------------------------ week labels


@pytest.mark.parametrize("label", ["../../x", "2026-W54", "2026-W00", "2026-w05", "2026-W5", ""])
def test_week_labels_outside_the_calendar_are_refused(label: str) -> None:
    with pytest.raises(ConfigError, match=r"--week must be an ISO week like 2026-W07"):
        check_week(label)


def test_week_53_exists_only_in_long_years() -> None:
    assert check_week("2026-W53") == "2026-W53"
    with pytest.raises(ConfigError, match=r"ISO week"):
        check_week("2025-W53")
