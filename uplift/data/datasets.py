"""Loaders for the public experiments kept beside the repository (Hillstrom, IHDP).

The data live outside the package, in ``shared/data`` next to the repository checkout; the
folder can be moved and named with the ``root`` argument or the ``UPLIFT_DATA`` environment
variable. Each folder holds a ``SOURCE.md`` with its provenance and the figures the tests check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from uplift.data.log import ColumnMap, ExperimentLog
from uplift.exceptions import ConfigError, SchemaError, UpliftError

__all__ = [
    "DATA_ENV",
    "HILLSTROM_CONTROL",
    "HILLSTROM_FEATURES",
    "IHDP_FEATURES",
    "IHDP_REPLICATIONS",
    "data_root",
    "hillstrom_log",
    "load_hillstrom",
    "load_ihdp",
]

DATA_ENV = "UPLIFT_DATA"
DEFAULT_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"

HILLSTROM_CONTROL = "No E-Mail"
HILLSTROM_COLUMNS = (
    "recency",
    "history_segment",
    "history",
    "mens",
    "womens",
    "zip_code",
    "newbie",
    "channel",
    "segment",
    "visit",
    "conversion",
    "spend",
)
# Canonical names of the Hillstrom columns: the e-mail is the arm, a site visit within two
# weeks stands in for "retained" and spend for realised revenue.
HILLSTROM_MAPPING = ("arm=segment", "retained=visit", "revenue=spend")
# Outcomes of the e-mail besides the mapped ones: never features.
HILLSTROM_OTHER_OUTCOMES = ("conversion",)
#: What was known of each customer before the e-mail: the clean features.
HILLSTROM_FEATURES = tuple(
    c
    for c in HILLSTROM_COLUMNS
    if c not in ("segment", "visit", "spend", *HILLSTROM_OTHER_OUTCOMES)
)

IHDP_REPLICATIONS = range(1, 11)
IHDP_FEATURES = tuple(f"x{i}" for i in range(1, 26))
IHDP_COLUMNS = ("treatment", "y_factual", "y_cfactual", "mu0", "mu1", *IHDP_FEATURES)
IHDP_TRUTH_COLUMNS = ("y_cfactual", "mu0", "mu1")


@dataclass(frozen=True)
class IHDPReplication:
    """One IHDP replication, with the training log and the truth kept in separate frames.

    Attributes
    ----------
    log : DataFrame
        What a model may see: ``unit_id``, ``treatment`` (0/1), ``y_factual`` and ``x1..x25``.
    true_cate : Series
        ``mu1 - mu0`` per unit (noiseless conditional effect), indexed like ``log``.
    replication : int
        Which of the ten files it came from.
    """

    log: pd.DataFrame
    true_cate: pd.Series
    replication: int


def data_root(root: str | Path | None = None) -> Path:
    """The folder of public data: ``root``, else ``$UPLIFT_DATA``, else ``../shared/data``."""
    if root is not None:
        return Path(root)
    from_env = os.environ.get(DATA_ENV)
    return Path(from_env) if from_env else DEFAULT_ROOT


def _existing_file(root: str | Path | None, *parts: str) -> Path:
    """Path of a data file, or an error naming where it was looked for and how to point at it."""
    path = data_root(root).joinpath(*parts)
    if not path.is_file():
        raise UpliftError(
            f"{path}: public data file not found. Put the shared data folder (with "
            f"{'/'.join(parts)}) at {DEFAULT_ROOT}, or pass root=... / set {DATA_ENV} to the "
            "folder that holds it."
        )
    return path


def _check_columns(frame: pd.DataFrame, expected: tuple[str, ...], path: Path) -> None:
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{path}: missing column(s) {missing}; expected {list(expected)}. "
            "The file is not the published one: restore it from the source in SOURCE.md."
        )


def load_hillstrom(root: str | Path | None = None) -> pd.DataFrame:
    """Load the Hillstrom e-mail experiment (64,000 customers, 3 arms) as published.

    Columns are the published ones (see ``SOURCE.md``): the arm is ``segment``
    (control ``"No E-Mail"``), outcomes ``visit``, ``conversion`` and ``spend``.
    :func:`hillstrom_log` reads it as an experiment log.

    Raises
    ------
    UpliftError
        When the file is not found under the data root.
    SchemaError
        When a published column is missing.
    """
    path = _existing_file(root, "hillstrom", "hillstrom.csv")
    frame = pd.read_csv(path)
    _check_columns(frame, HILLSTROM_COLUMNS, path)
    return frame


def hillstrom_column_map() -> ColumnMap:
    """Read Hillstrom as a log: arm=segment, retained=visit, revenue=spend; conversion ignored.

    ``conversion`` is another outcome of the e-mail, so it must never become a feature.
    """
    return ColumnMap.parse(HILLSTROM_MAPPING, ignore=HILLSTROM_OTHER_OUTCOMES)


def hillstrom_log(root: str | Path | None = None) -> ExperimentLog:
    """Hillstrom as a validated experiment log (control ``"No E-Mail"``).

    Customers get ``order_id`` 1..64,000 in file order; propensities are the arms' shares
    (the e-mails were assigned uniformly at random).
    """
    frame = load_hillstrom(root)
    frame.insert(0, "order_id", np.arange(1, len(frame) + 1))
    return ExperimentLog.from_frame(
        frame,
        control=HILLSTROM_CONTROL,
        column_map=hillstrom_column_map(),
        source=str(data_root(root) / "hillstrom" / "hillstrom.csv"),
    )


def load_ihdp(replication: int, root: str | Path | None = None) -> IHDPReplication:
    """Load one replication of the IHDP benchmark (Hill 2011, NPCI setting A; CEVAE files).

    Parameters
    ----------
    replication : int
        1 to 10: the file ``cevae_npci/ihdp_npci_<replication>.csv``.
    root : path, optional
        The data root (default: ``$UPLIFT_DATA`` or ``../shared/data``).

    Returns
    -------
    IHDPReplication
        ``log`` (unit_id, treatment, y_factual, x1..x25) and, apart from it, ``true_cate``.

    Raises
    ------
    ConfigError
        When ``replication`` is not 1 to 10.
    UpliftError
        When the file is not found under the data root.
    """
    if not isinstance(replication, int) or replication not in IHDP_REPLICATIONS:
        raise ConfigError(f"replication must be an integer from 1 to 10; got {replication!r}")
    path = _existing_file(root, "ihdp", "cevae_npci", f"ihdp_npci_{replication}.csv")
    frame = pd.read_csv(path, header=None)
    if frame.shape[1] != len(IHDP_COLUMNS):
        raise SchemaError(
            f"{path}: expected {len(IHDP_COLUMNS)} columns without header "
            f"({', '.join(IHDP_COLUMNS[:5])}, x1..x25); got {frame.shape[1]}"
        )
    frame.columns = list(IHDP_COLUMNS)
    frame["treatment"] = frame["treatment"].astype(int)
    true_cate = (frame["mu1"] - frame["mu0"]).rename("true_cate")
    log = frame.drop(columns=list(IHDP_TRUTH_COLUMNS))
    log.insert(0, "unit_id", range(len(log)))
    return IHDPReplication(log=log, true_cate=true_cate, replication=replication)
