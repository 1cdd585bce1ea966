"""Real transaction data shipped by a package: the CDNOW files of ``lifetimes``, in the data contract.

CDNOW (Fader, Hardie & Lee 2005): every purchase of the 23,570 customers who first bought a CD
from CDNOW in the first quarter of 1997, January 1997 - June 1998 (``master``), and the 1/10
sample of 2,357 customers behind the published model estimates (``sample``).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

CDNOW = {"sample": "CDNOW_sample.txt", "master": "CDNOW_master.txt"}
CALIBRATION_END = "1997-09-30"        # the end of the published 39-week calibration period
OBSERVATION_END = "1998-06-30"


def cdnow_path(which: str = "sample") -> Path:
    if which not in CDNOW:
        raise ValueError(f"which must be one of {', '.join(CDNOW)}, got {which!r}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lifetimes
    return Path(lifetimes.__file__).parent / "datasets" / CDNOW[which]


def cdnow_transactions(which: str = "sample") -> pd.DataFrame:
    """The CDNOW purchases as contract rows: client_id, date, amount, transaction_id, quantity.

    The files have no transaction id; each line's number (within its customer) stands in, so two
    identical lines on the same day stay two purchases.
    """
    raw = pd.read_csv(cdnow_path(which), sep=r"\s+", header=None, dtype=str, skiprows=1 if which == "master" else 0,
                      names=["customer", "sample_id", "date", "quantity", "amount"] if which == "sample"
                      else ["customer", "date", "quantity", "amount"])
    client = "C" + raw["customer"].str.zfill(5)
    return pd.DataFrame({"client_id": client,
                         "date": pd.to_datetime(raw["date"], format="%Y%m%d").dt.strftime("%Y-%m-%d"),
                         "amount": raw["amount"].astype(float),
                         "transaction_id": "L" + (raw.groupby(client).cumcount() + 1).astype(str),
                         "quantity": raw["quantity"].astype(int)})


def write_cdnow(out: str | Path, which: str = "sample") -> Path:
    """Write the CDNOW purchases as a contract CSV (``mlcore ingest transactions`` loads it)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cdnow_transactions(which).to_csv(out, index=False)
    return out
