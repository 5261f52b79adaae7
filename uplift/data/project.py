"""The project file, ``uplift.toml``: what a team sets once for its shop's data.

Every command reads it (``--config PATH``, else ``uplift.toml`` in the working directory if
there is one) and a flag given on the command line wins over it. A file with an unknown
section or key, or a value of the wrong type, is refused with one line that names the file
and the key, so a typo never silently falls back to a default::

    [log]
    map = { arm = "segment", retained = "visit", revenue = "spend" }
    ignore = ["conversion"]      # columns that are neither canonical nor features
    allow = []                   # features the leak guard may not refuse
    control = "No E-Mail"
    directions = { history = "up" }  # known: more of it, likelier kept (up) or not (down)

    [outcome]
    kept = "visited"             # the words for the outcome (see Words)
    lost = "missed visits"
    avoided = "visits gained"
    order_value = 10.0           # every order is worth this (or map an order_value column)
    currency = "USD"

    [arms]
    costs = { "Mens E-Mail" = 0.15 }
    vouchers = {}
    capacities = { "Mens E-Mail" = 5000 }

    [policy]
    holdout = 0.05
    explore = 0.0
    budget = 1000.0

    [weekly]
    queue_out = "queue.parquet"  # relative paths are relative to the project file
    segments = ["channel"]

    [causes]                     # which columns speak for which cause of risk
    payment = ["psp_status"]     # (the order world's columns have a default map)
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uplift.data.causes import FAMILIES
from uplift.exceptions import ConfigError

__all__ = [
    "PROJECT_FILE",
    "Project",
    "Words",
    "load_project",
    "merge_pairs",
    "resolve",
    "union",
]

PROJECT_FILE = "uplift.toml"


@dataclass(frozen=True)
class Words:
    """How reports and verdicts name the outcome; the defaults are an order kept, not cancelled.

    A shop whose outcome is a visit might use ``Words(kept="visited", keeps="brings back",
    lost="missed visits", avoided="visits gained", rate="no-visit rate")``.
    """

    #: The good outcome as an adjective: "retained revenue protected", "retained uplift".
    kept: str = "retained"
    #: What an arm does to more orders: "it keeps 2.0% more orders".
    keeps: str = "keeps"
    #: The bad outcome, counted: "it raises cancellations there by 2.0%".
    lost: str = "cancellations"
    #: The headline count of orders turned from the bad outcome to the good one.
    avoided: str = "cancellations avoided"
    #: The bad outcome's share of orders (the drift chart).
    rate: str = "cancellation rate"


@dataclass(frozen=True)
class Project:
    """The settings of a project file; every field is empty when there is no file."""

    path: Path | None = None
    column_map: dict[str, str] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    control: str | None = None
    directions: dict[str, str] = field(default_factory=dict)
    words: Words = Words()
    order_value: float | None = None
    currency: str = ""
    costs: dict[str, float] = field(default_factory=dict)
    vouchers: dict[str, float] = field(default_factory=dict)
    capacities: dict[str, float] = field(default_factory=dict)
    holdout: float | None = None
    explore: float | None = None
    budget: float | None = None
    queue_out: Path | None = None
    segments: tuple[str, ...] = ()
    causes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """How messages name the file."""
        return str(self.path) if self.path is not None else PROJECT_FILE

    def money(self, amount: float, digits: int = 2) -> str:
        """``amount`` with the project's currency in front, e.g. "EUR 1,234.50"."""
        text = f"{amount:,.{digits}f}"
        return f"{self.currency} {text}" if self.currency else text


# section -> key -> (kind, description); the kinds are checked by ``_value``.
_SCHEMA: dict[str, dict[str, str]] = {
    "log": {
        "map": "names",
        "ignore": "list",
        "allow": "list",
        "control": "text",
        "directions": "directions",
    },
    "outcome": {
        **dict.fromkeys(("kept", "keeps", "lost", "avoided", "rate"), "text"),
        "order_value": "positive",
        "currency": "text",
    },
    "arms": {"costs": "amounts", "vouchers": "amounts", "capacities": "amounts"},
    "policy": {"holdout": "share", "explore": "share", "budget": "amount"},
    "weekly": {"queue_out": "text", "segments": "list"},
    "causes": dict.fromkeys(FAMILIES, "list"),
}


def load_project(config: Path | None = None, cwd: Path | None = None) -> Project:
    """The project of ``config``, else of ``uplift.toml`` in ``cwd``, else an empty one."""
    if config is None:
        found = (cwd or Path.cwd()) / PROJECT_FILE
        if not found.is_file():
            return Project()
        config = found
    elif not config.is_file():
        raise ConfigError(f"--config {config}: no such file")
    try:
        raw = tomllib.loads(config.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{config}: not a valid TOML file ({error})") from None
    values = _checked(raw, config)
    log, outcome, arms = values["log"], values["outcome"], values["arms"]
    policy, weekly = values["policy"], values["weekly"]
    queue_out = weekly.get("queue_out")
    return Project(
        path=config,
        column_map=dict(log.get("map", {})),
        ignore=tuple(log.get("ignore", ())),
        allow=tuple(log.get("allow", ())),
        control=log.get("control"),
        directions=dict(log.get("directions", {})),
        words=Words(**{k: v for k, v in outcome.items() if k in Words.__dataclass_fields__}),
        order_value=outcome.get("order_value"),
        currency=outcome.get("currency", ""),
        costs=dict(arms.get("costs", {})),
        vouchers=dict(arms.get("vouchers", {})),
        capacities=dict(arms.get("capacities", {})),
        holdout=policy.get("holdout"),
        explore=policy.get("explore"),
        budget=policy.get("budget"),
        # A relative path means the same file wherever the command runs from.
        queue_out=None if queue_out is None else config.parent / queue_out,
        segments=tuple(weekly.get("segments", ())),
        causes=dict(values["causes"]),
    )


def merge_pairs(configured: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """The project's ``key = value`` settings with the command line's flags winning per key."""
    return {**configured, **flags}


def _checked(raw: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """Every section and key known and of the right kind; missing sections are empty."""
    unknown = sorted(set(raw) - set(_SCHEMA))
    if unknown:
        raise ConfigError(
            f"{path}: unknown section [{unknown[0]}]; sections are "
            + ", ".join(f"[{name}]" for name in _SCHEMA)
        )
    checked: dict[str, dict[str, Any]] = {}
    for section, keys in _SCHEMA.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table of key = value lines")
        strange = sorted(set(table) - set(keys))
        if strange:
            raise ConfigError(
                f"{path}: unknown key {strange[0]!r} in [{section}]; keys there are "
                + ", ".join(keys)
            )
        checked[section] = {
            key: _value(table[key], kind, f"{path}: [{section}] {key}")
            for key, kind in keys.items()
            if key in table
        }
    return checked


def _value(value: Any, kind: str, where: str) -> Any:
    """``value`` checked to be of ``kind``; a ConfigError naming ``where`` otherwise."""
    if kind == "text":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where} must be a non-empty text; got {value!r}")
        return value.strip()
    if kind == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where} must be a list of column names; got {value!r}")
        return tuple(value)
    if kind == "names":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{where} must map canonical names to column names; got {value!r}")
        return value
    if kind == "directions":
        if not isinstance(value, dict) or not all(v in ("up", "down") for v in value.values()):
            raise ConfigError(f'{where} must map column names to "up" or "down"; got {value!r}')
        return value
    if kind == "amounts":
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must map arm names to numbers; got {value!r}")
        return {str(arm): _number(v, f"{where}.{arm}", low=0.0) for arm, v in value.items()}
    if kind == "share":
        share = _number(value, where, low=0.0)
        if share >= 1:
            raise ConfigError(f"{where} must be a share in [0, 1); got {value!r}")
        return share
    low = 0.0 if kind == "amount" else math.ulp(0.0)
    return _number(value, where, low=low)


def _number(value: Any, where: str, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a number; got {value!r}")
    if value < low:
        bound = "positive" if low > 0 else "at least 0"
        raise ConfigError(f"{where} must be {bound}; got {value!r}")
    return float(value)


def resolve(flag: Any, configured: Any, default: Any) -> Any:
    """A flag given on the command line, else the project's setting, else the default."""
    if flag is not None:
        return flag
    return configured if configured is not None else default


def union(configured: Sequence[str], flags: Sequence[str] | None) -> tuple[str, ...]:
    """The project's names and the flags' names, each once, in that order."""
    return tuple(dict.fromkeys([*configured, *(flags or [])]))
