"""What the decision service decides with: costs, vouchers, live capacities, holdout, explore.

The defaults come from the project file (``[arms]`` and ``[policy]`` of ``uplift.toml``), so
the service and the weekly job value orders and hold out the same way. Capacities are a number
of orders per arm and per ``capacity_period`` (a UTC day or an ISO week). Arms are checked
against the model when the engine is built (:meth:`ServeSettings.check_arms`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from uplift.data.project import Project, resolve
from uplift.exceptions import ConfigError, check_option

__all__ = ["CAPACITY_PERIODS", "DEFAULT_HOLDOUT", "DEFAULT_SALT", "CapacityPeriod", "ServeSettings"]

CapacityPeriod = Literal["day", "week"]
CAPACITY_PERIODS: tuple[CapacityPeriod, ...] = ("day", "week")
#: The weekly job's default holdout (``WeeklyConfig.holdout``): the service holds out the same.
DEFAULT_HOLDOUT = 0.1
#: The salt of the service's holdout and exploration hash (see ``hash_unit``).
DEFAULT_SALT = "uplift-serve"


@dataclass(frozen=True)
class ServeSettings:
    """The service's policy settings.

    Attributes
    ----------
    costs, vouchers : mapping of arm to float
        As in ``uplift rank``: paid per use / per kept order (arms not named: 0).
    capacities : mapping of arm to float
        Whole number of orders per arm and per ``capacity_period``; arms not named are
        unlimited.
    capacity_period : "day" or "week"
        The period capacities count over: a UTC day or an ISO week (Monday 00:00 UTC).
    holdout, explore : float
        Shares of orders kept on control / given a random treatment arm, by a hash of the
        order id and ``salt``.
    salt : str
        Salt of that hash: the same salt gives the same orders the same draws on any machine.
    pacing_step : float
        How far ahead of schedule (share of capacity) an arm's use may run before its price
        rises by about one typical net value of the arm (see :mod:`uplift.serve.pacing`).
    pacing_lead : float
        Share of capacity an arm may use ahead of the period's elapsed share, at most.
    """

    costs: Mapping[str, float] = field(default_factory=dict)
    vouchers: Mapping[str, float] = field(default_factory=dict)
    capacities: Mapping[str, float] = field(default_factory=dict)
    capacity_period: CapacityPeriod = "week"
    holdout: float = DEFAULT_HOLDOUT
    explore: float = 0.0
    salt: str = DEFAULT_SALT
    pacing_step: float = 0.02
    pacing_lead: float = 0.05

    def __post_init__(self) -> None:
        check_option("capacity_period", self.capacity_period, CAPACITY_PERIODS)
        for name in ("costs", "vouchers"):
            _check_amounts(name, getattr(self, name))
        _check_amounts("capacities", self.capacities)
        fractional = {a: v for a, v in self.capacities.items() if not float(v).is_integer()}
        if fractional:
            raise ConfigError(f"capacities must be whole numbers of orders; got {fractional}")
        for name, share in (("holdout", self.holdout), ("explore", self.explore)):
            if isinstance(share, bool) or not 0.0 <= share < 1.0:
                raise ConfigError(f"{name} must be a share in [0, 1); got {share!r}")
        if self.holdout + self.explore >= 1.0:
            raise ConfigError(
                f"holdout + explore must leave orders to the policy; got {self.holdout} + "
                f"{self.explore} >= 1"
            )
        if not isinstance(self.salt, str) or not self.salt:
            raise ConfigError(f"salt must be a non-empty text; got {self.salt!r}")
        if not 0.0 < self.pacing_step <= 1.0:
            raise ConfigError(f"pacing_step must be in (0, 1]; got {self.pacing_step!r}")
        if not 0.0 <= self.pacing_lead <= 1.0:
            raise ConfigError(f"pacing_lead must be in [0, 1]; got {self.pacing_lead!r}")

    @classmethod
    def from_project(
        cls,
        project: Project,
        *,
        capacity_period: CapacityPeriod = "week",
        holdout: float | None = None,
        explore: float | None = None,
        salt: str = DEFAULT_SALT,
    ) -> ServeSettings:
        """The project file's costs, vouchers, capacities, holdout and explore; arguments given
        here (the command line's flags) win over the file."""
        return cls(
            costs=dict(project.costs),
            vouchers=dict(project.vouchers),
            capacities=dict(project.capacities),
            capacity_period=capacity_period,
            holdout=resolve(holdout, project.holdout, DEFAULT_HOLDOUT),
            explore=resolve(explore, project.explore, 0.0),
            salt=salt,
        )

    def check_arms(self, arms: tuple[str, ...], control: str) -> None:
        """Refuse arms named in costs, vouchers or capacities that the model does not know.

        ``arms`` are the model's treatment arms; a cost or voucher of 0 for ``control`` is
        allowed (a full cost table), a capacity for it is not (control takes no action).
        """
        problems = []
        for name in ("costs", "vouchers", "capacities"):
            given = getattr(self, name)
            named = {
                a for a in given if not (a == control and name != "capacities" and not given[a])
            }
            unknown = sorted(named - set(arms))
            if unknown:
                problems.append(f"{name} name {', '.join(unknown)}")
        if problems:
            raise ConfigError(
                f"{'; '.join(problems)}: not arms of the model, which knows {', '.join(arms)} "
                f"(control: {control}); fix [arms] in uplift.toml or the flags"
            )


def _check_amounts(name: str, amounts: Mapping[str, float]) -> None:
    bad = {
        a: v
        for a, v in amounts.items()
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0
    }
    if bad:
        raise ConfigError(f"{name} must be finite numbers >= 0 per arm; got {bad}")
