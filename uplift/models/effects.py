"""The central result: what every treatment arm is predicted to do for every order.

An :class:`Effects` holds, per order and treatment arm, the retained uplift (change in the
probability of keeping the order) and the revenue uplift, and per order the base retention
P(retained | control, x). It is what a model predicts, what the policy ranks, and what
``uplift predict`` writes: the file's columns are named here and nowhere else
(``retained_uplift_<arm>``, ``revenue_uplift_<arm>``, ``retained_base``), and a Parquet file
records the control arm and the format version in its metadata.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from numpy.typing import NDArray

from uplift.exceptions import ConfigError, SchemaError, check_option, describe_rows

__all__ = [
    "BASE_COLUMN",
    "Effects",
    "NetValue",
    "Outcome",
    "as_effects",
    "best_arm",
    "concat_effects",
    "effect_column",
    "read_effects",
]

FloatArray = NDArray[np.float64]
ArrayLikeFloat = pd.Series | NDArray[np.float64] | None
Outcome = Literal["retained", "revenue"]
OUTCOMES: tuple[Outcome, ...] = ("retained", "revenue")
BASE_COLUMN = "retained_base"
#: Version of the effects file; files without one (written before it) are version 0.
FORMAT_VERSION = 1
METADATA_KEY = b"uplift.effects"


def effect_column(outcome: Outcome, arm: str) -> str:
    """The file column of ``outcome`` uplift for ``arm``: ``<outcome>_uplift_<arm>``."""
    return f"{outcome}_uplift_{arm}"


def best_arm(values: FloatArray, arms: Sequence[str], control: str) -> NDArray[np.object_]:
    """Per row, the arm of the largest value; the control arm where no value is above 0.

    ``values`` has one column per arm of ``arms`` (treatment arms: control's value is 0).
    """
    if values.shape[1] == 0:
        return np.full(len(values), control, dtype=object)
    best = values.argmax(axis=1)
    positive = values[np.arange(len(values)), best] > 0
    return np.where(positive, np.asarray(arms, dtype=object)[best], control).astype(object)


@dataclass(frozen=True)
class NetValue:
    """Per order (rows) and treatment arm (columns, in ``arms`` order): expected retained
    revenue uplift and expected cost; ``value = revenue - cost`` (control is 0)."""

    arms: tuple[str, ...]
    revenue: FloatArray
    cost: FloatArray

    @property
    def value(self) -> FloatArray:
        """Net value: revenue uplift minus cost."""
        return self.revenue - self.cost


@dataclass(frozen=True, eq=False)
class Effects:
    """Predicted effects of every treatment arm on every order.

    Attributes
    ----------
    control : str
        The control arm: no action, against which every uplift is measured.
    treatment_arms : tuple of str
        The other arms, the columns of ``retained`` and ``revenue``.
    retained, revenue : DataFrame or None
        Retained uplift and revenue uplift per order (rows) and arm (columns); None when the
        model has no such outcome.
    base : Series or None
        P(retained | control, x) per order (None without a retained outcome).
    order_ids : Series or None
        The orders' ids, aligned with the rows, when known.
    """

    control: str
    treatment_arms: tuple[str, ...]
    retained: pd.DataFrame | None
    revenue: pd.DataFrame | None
    base: pd.Series | None = None
    order_ids: pd.Series | None = None

    def __post_init__(self) -> None:
        tables = [t for t in (self.retained, self.revenue) if t is not None]
        if not tables:
            raise SchemaError("effects need a retained or a revenue uplift")
        for table in tables:
            if list(table.columns) != list(self.treatment_arms):
                raise SchemaError(
                    f"effects columns {list(table.columns)} are not the treatment arms "
                    f"{list(self.treatment_arms)}"
                )
        if self.control in self.treatment_arms:
            raise SchemaError(f"the control arm {self.control!r} is also a treatment arm")

    @property
    def index(self) -> pd.Index:
        """The rows' index (that of the orders they were predicted for)."""
        return self._first.index

    @property
    def _first(self) -> pd.DataFrame:
        table = self.retained if self.retained is not None else self.revenue
        assert table is not None  # __post_init__ guarantees one of them
        return table

    @property
    def arms(self) -> tuple[str, ...]:
        """Every arm, control first."""
        return (self.control, *self.treatment_arms)

    def __len__(self) -> int:
        return len(self._first)

    def uplift(self, outcome: Outcome) -> pd.DataFrame:
        """The uplift table of ``outcome``: orders x treatment arms."""
        check_option("outcome", outcome, OUTCOMES)
        table = self.retained if outcome == "retained" else self.revenue
        if table is None:
            raise SchemaError(
                f"these effects have no {outcome} uplift (the model's log had no {outcome})"
            )
        return table

    def outcomes(self, outcome: Outcome, order_value: ArrayLikeFloat = None) -> pd.DataFrame:
        """Expected ``outcome`` under every arm (control first): base level plus uplift.

        Revenue levels are ``retained_base x order_value`` plus the revenue uplift, so
        ``order_value`` is needed for them.
        """
        if self.base is None:
            raise SchemaError("these effects have no retained outcome (no retained_base)")
        base = self.base.to_numpy(np.float64)
        if outcome == "revenue":
            if order_value is None:
                raise SchemaError("revenue levels need the orders' order_value")
            base = base * np.asarray(order_value, dtype=np.float64)
        uplift = self.uplift(outcome).to_numpy(np.float64)
        levels = np.column_stack([base, base[:, None] + uplift])
        return pd.DataFrame(levels, index=self.index, columns=list(self.arms))

    def net_value(
        self,
        costs: Mapping[str, float] | None = None,
        vouchers: Mapping[str, float] | None = None,
    ) -> NetValue:
        """Expected revenue uplift and cost per order and treatment arm.

        ``costs`` is paid on every use of an arm (arms not named cost 0); ``vouchers`` only
        when the order is kept, so it needs the predicted retention level, ``base + retained
        uplift``. The control arm takes no action: a cost of 0 may be given for it (as in a
        full cost table), any other is refused.
        """
        costs = _arm_numbers("cost", costs, self)
        vouchers = _arm_numbers("voucher", vouchers, self)
        revenue = _finite(self.uplift("revenue"), "revenue uplift")
        cost = np.broadcast_to(
            np.array([costs.get(a, 0.0) for a in self.treatment_arms]), revenue.shape
        ).copy()
        paid = [a for a in self.treatment_arms if vouchers.get(a, 0.0) > 0]
        if paid:
            if self.base is None:
                raise SchemaError("a voucher needs the predicted retention level (retained_base)")
            base = _finite(self.base.to_frame(), "retained_base")
            uplift = _finite(self.uplift("retained")[paid], "retained uplift")
            kept = np.clip(base + uplift, 0.0, 1.0)
            columns = [self.treatment_arms.index(a) for a in paid]
            cost[:, columns] += kept * np.array([vouchers[a] for a in paid])
        return NetValue(arms=self.treatment_arms, revenue=revenue, cost=cost)

    def best_arm(
        self,
        costs: Mapping[str, float] | None = None,
        vouchers: Mapping[str, float] | None = None,
        *,
        outcome: Outcome = "revenue",
    ) -> NDArray[np.object_]:
        """The unconstrained choice per order: the arm of highest net value, else control.

        With ``outcome="retained"`` the arms are compared by retained uplift alone (costs are
        in currency and do not apply to a probability).
        """
        if outcome == "revenue":
            values = self.net_value(costs, vouchers).value
        else:
            values = _finite(self.uplift("retained"), "retained uplift")
        return best_arm(values, self.treatment_arms, self.control)

    def subset(self, rows: NDArray[np.bool_] | pd.Series) -> Effects:
        """The effects of the orders where ``rows`` holds (a boolean mask, by position)."""
        mask = np.asarray(rows, dtype=bool)
        return self._per_row(lambda part: part.loc[mask])

    def with_index(self, index: pd.Index) -> Effects:
        """The same effects with their rows labelled by ``index``."""
        return self._per_row(lambda part: part.set_axis(index))

    def _per_row(self, change: Callable[[Any], Any]) -> Effects:
        """The effects with ``change`` applied to every per-order part (tables and series)."""

        def apply(part: Any) -> Any:
            return None if part is None else change(part)

        return replace(
            self,
            retained=apply(self.retained),
            revenue=apply(self.revenue),
            base=apply(self.base),
            order_ids=apply(self.order_ids),
        )

    def with_order_ids(self, ids: pd.Series | NDArray[np.generic]) -> Effects:
        """The same effects, keyed by ``ids`` (one per row)."""
        values = np.asarray(ids)
        if len(values) != len(self):
            raise SchemaError(f"{len(values)} order ids for {len(self)} rows of effects")
        return replace(self, order_ids=pd.Series(values, index=self.index, name="order_id"))

    # ------------------------------------------------------------------ the file format
    def to_frame(self) -> pd.DataFrame:
        """The file's columns: ``order_id`` (when known), the uplifts, ``retained_base``."""
        parts: list[pd.DataFrame | pd.Series] = []
        if self.order_ids is not None:
            parts.append(self.order_ids.rename("order_id"))
        for outcome in OUTCOMES:
            table = self.retained if outcome == "retained" else self.revenue
            if table is not None:
                parts.append(
                    table.set_axis([effect_column(outcome, a) for a in table.columns], axis=1)
                )
        if self.base is not None:
            parts.append(self.base.rename(BASE_COLUMN))
        return pd.concat(parts, axis=1)

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, *, control: str = "control", source: str = "effects"
    ) -> Effects:
        """Read the columns :meth:`to_frame` writes (any order; ``order_id`` optional)."""
        if not isinstance(frame, pd.DataFrame):
            raise SchemaError(f"{source}: effects must be a DataFrame; got {type(frame).__name__}")
        tables = {o: _arm_table(frame, o) for o in OUTCOMES}
        arms = [tuple(t.columns) for t in tables.values() if t is not None]
        if not arms:
            raise SchemaError(
                f"{source}: no retained_uplift_<arm> or revenue_uplift_<arm> column; expected "
                f"the output of `uplift predict`; columns present: "
                f"{', '.join(map(str, frame.columns))}"
            )
        if len(set(arms)) > 1:
            raise SchemaError(f"{source}: retained and revenue uplift name different arms {arms}")
        base = frame[BASE_COLUMN].astype(np.float64) if BASE_COLUMN in frame else None
        ids = frame["order_id"] if "order_id" in frame.columns else None
        return cls(control, arms[0], tables["retained"], tables["revenue"], base, ids)

    def metadata(self) -> dict[bytes, bytes]:
        """What a Parquet file of these effects records beside the columns."""
        text = json.dumps({"format": FORMAT_VERSION, "control": self.control})
        return {METADATA_KEY: text.encode()}


def _arm_table(frame: pd.DataFrame, outcome: Outcome) -> pd.DataFrame | None:
    prefix = effect_column(outcome, "")
    columns = [c for c in frame.columns if isinstance(c, str) and c.startswith(prefix)]
    if not columns:
        return None
    table = frame[columns].rename(columns=lambda c: c.removeprefix(prefix))
    return table.astype(np.float64)


def as_effects(effects: Effects | pd.DataFrame, control: str = "control") -> Effects:
    """``effects`` as an :class:`Effects`; a frame of the file's columns names no control."""
    if isinstance(effects, Effects):
        return effects
    return Effects.from_frame(effects, control=control)


def effects_control(metadata: Mapping[bytes, bytes] | None) -> str | None:
    """The control arm a Parquet effects file records (None for files written before)."""
    raw = (metadata or {}).get(METADATA_KEY)
    if raw is None:
        return None
    try:
        recorded = json.loads(raw)
        control = recorded["control"]
    except (ValueError, KeyError, TypeError):
        raise SchemaError("the effects file's metadata is damaged; write it again") from None
    if not isinstance(control, str):
        raise SchemaError("the effects file's metadata is damaged; write it again")
    if recorded.get("format", 0) > FORMAT_VERSION:
        raise SchemaError(
            f"the effects file has format {recorded.get('format')}; this version reads up to "
            f"{FORMAT_VERSION}: upgrade uplift"
        )
    return control


def read_effects(path: str | Path, frame: pd.DataFrame, *, control: str | None) -> Effects:
    """The effects of a file read into ``frame``: the control from its metadata or ``control``.

    A Parquet file written by ``uplift predict`` names its control arm; a CSV file (or a file
    of the earlier format) does not, and then ``control`` (default ``control``) is taken.
    ``control`` that disagrees with the file's is refused.
    """
    recorded = None
    if Path(path).suffix.lower() == ".parquet":
        recorded = effects_control(pq.read_schema(path).metadata)
    if recorded is not None and control is not None and control != recorded:
        raise ConfigError(
            f"{path}: the effects' control arm is {recorded!r}, not {control!r}; drop --control"
        )
    chosen = recorded or control or "control"
    return Effects.from_frame(frame, control=chosen, source=str(path))


def _arm_numbers(
    kind: str, numbers: Mapping[str, float] | None, effects: Effects
) -> dict[str, float]:
    """Per-arm costs or vouchers, checked; a zero for the control arm is allowed and dropped."""
    numbers = dict(numbers or {})
    if numbers.get(effects.control) == 0:
        del numbers[effects.control]
    unknown = sorted(set(numbers) - set(effects.treatment_arms))
    if unknown:
        raise ConfigError(
            f"{kind} given for unknown arm(s) {', '.join(unknown)}; the model knows "
            f"{', '.join(effects.treatment_arms)}"
        )
    bad = {a: v for a, v in numbers.items() if not math.isfinite(v) or v < 0}
    if bad:
        raise ConfigError(f"{kind} must be a finite number >= 0; got {bad}")
    return numbers


def _finite(table: pd.DataFrame, what: str) -> FloatArray:
    values = table.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise SchemaError(
            f"effects: {what} is missing or infinite in {describe_rows(np.flatnonzero(bad) + 1)}"
        )
    return values


def concat_effects(parts: Sequence[Effects]) -> Effects:
    """The rows of several effects of the same arms, one after another, numbered from 0."""
    first = parts[0]

    def join(tables: list[pd.DataFrame | pd.Series | None]) -> pd.DataFrame | pd.Series | None:
        if any(t is None for t in tables):
            return None
        return pd.concat(tables, ignore_index=True)  # type: ignore[arg-type]

    return Effects(
        first.control,
        first.treatment_arms,
        join([p.retained for p in parts]),  # type: ignore[arg-type]
        join([p.revenue for p in parts]),  # type: ignore[arg-type]
        join([p.base for p in parts]),  # type: ignore[arg-type]
        join([p.order_ids for p in parts]),  # type: ignore[arg-type]
    )
