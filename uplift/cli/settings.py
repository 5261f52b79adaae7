"""The settings of one run: the project file's, with the command line's flags winning."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from uplift.cli.app import parse_numbers, parse_pairs
from uplift.data.log import CONTROL, ColumnMap
from uplift.data.project import Project, load_project, merge_pairs, resolve, union
from uplift.exceptions import ConfigError

if TYPE_CHECKING:
    from uplift.models.uplift_model import UpliftModel

__all__ = ["LogSettings", "check_control", "directions", "log_settings", "numbers"]


@dataclass(frozen=True)
class LogSettings:
    """How to read a log: the project, the column map, the control arm, the allowed columns."""

    project: Project
    column_map: ColumnMap
    control: str
    allow: tuple[str, ...]


def log_settings(
    config: Path | None,
    mapping: list[str] | None = None,
    ignore: list[str] | None = None,
    control: str | None = None,
    *,
    order_value: float | None = None,
    allow: list[str] | None = None,
    default_control: str = CONTROL,
) -> LogSettings:
    """The project of ``config`` and the log options resolved over it."""
    project = load_project(config)
    configured, value = dict(project.column_map), project.order_value
    # A flag for the order value replaces the project's, as a column or as a constant.
    if order_value is not None:
        configured.pop("order_value", None)
        value = order_value
    elif any(pair.partition("=")[0].strip() == "order_value" for pair in mapping or []):
        value = None
    column_map = ColumnMap.parse(
        mapping or [],
        union(project.ignore, ignore),
        configured=configured,
        order_value=value,
    )
    return LogSettings(
        project=project,
        column_map=column_map,
        control=resolve(control, project.control, default_control),
        allow=union(project.allow, allow),
    )


def numbers(configured: dict[str, float], flags: list[str] | None, option: str) -> dict[str, float]:
    """``arm=X`` settings of the project with the flags of ``option`` winning per arm."""
    return merge_pairs(configured, parse_numbers(flags, option))


def directions(project: Project, flags: list[str] | None) -> dict[str, str]:
    """The project's ``[log] directions`` with the ``--direction`` flags winning per column
    (checked against the log when the model is trained)."""
    return merge_pairs(project.directions, parse_pairs(flags, "--direction"))


def check_control(control: str | None, model: UpliftModel) -> None:
    """A control arm named by a flag or the project must be the model's own."""
    if control is not None and control != model.control:
        raise ConfigError(
            f"--control {control!r} is not the model's control arm {model.control!r}; "
            "drop --control (the model knows its control arm) or train with this one"
        )
