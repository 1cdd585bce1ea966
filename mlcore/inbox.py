"""The inbox: which dropped files a run claims and in what order, how each is loaded and filed.

Layout under the inbox folder::

    notes*.csv, note_concepts*.csv, concepts*.csv, outcomes*.csv, transactions*.csv   dropped files, waiting
    claimed/<run>/    the files one run claimed: moved there at its start, one atomic rename each
    processed/        loaded files, each beside <file>.report.txt
    rejected/         rejected files, each beside <file>.report.txt naming the row and column at fault

A run claims every waiting file before it loads any, so a drop that lands while it runs waits
whole for the next run (notes are never left behind while their concepts are loaded). A run that
stops part-way leaves files in its ``claimed/<run>/`` folder; the next run's claim moves them into
its own folder first, so they are loaded then. Producers should write a file under another name
(``notes_x.csv.part``) and rename it into place, so that a half-written file is never claimed.

Example:
    >>> select(["outcomes_1.csv", "notes_2.csv", "readme.txt", "notes_1.csv", "concepts_1.csv"])
    {'notes': ['notes_1.csv', 'notes_2.csv'], 'concepts': ['concepts_1.csv'], 'outcomes': ['outcomes_1.csv'], 'transactions': []}
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import sqlalchemy as sa

from mlcore.exceptions import InputDataError
from mlcore.ingest import LoadResult, ingest_file

# Load order: concepts refer to notes, so notes go first.
PATTERNS = {"notes": ("notes*.csv",), "concepts": ("note_concepts*.csv", "concepts*.csv"),
            "outcomes": ("outcomes*.csv",), "transactions": ("transactions*.csv",)}
KINDS = tuple(PATTERNS)
CLAIMED, PROCESSED, REJECTED = "claimed", "processed", "rejected"
MAX_CLIENTS_IN_EVENT = 50_000


def kind_of(name: str) -> str | None:
    """The kind of input a file name is (``notes``, ``concepts``, ``outcomes``, ``transactions``), or None."""
    for kind, patterns in PATTERNS.items():
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return kind
    return None


def select(names: Iterable[str]) -> dict[str, list[str]]:
    """The input files among ``names``, by kind in load order, each kind's files sorted by name."""
    chosen = {kind: [] for kind in KINDS}
    for name in sorted(set(names)):
        kind = kind_of(name)
        if kind is not None:
            chosen[kind].append(name)
    return chosen


def plan_claim(waiting: Iterable[str], leftovers: Sequence[tuple[str, Iterable[str]]],
               held: Iterable[str] = ()) -> list[tuple[str | None, str]]:
    """The moves that claim files for a run, in order: ``(source, name)``, source None for the inbox.

    Args:
        waiting: Names of the files in the inbox itself.
        leftovers: ``(folder, names)`` of the claimed folders of earlier runs that did not finish
            them, oldest first. Their files are claimed first: they were dropped before the waiting ones.
        held: Names already in the run's own folder (a retried claim).

    Only input files (see ``select``) are moved. A name the run already holds is not moved again: that
    file stays where it is for a later run, so no file overwrites another and the older loads first.
    """
    taken = set(held)
    moves = []
    for source, names in [*leftovers, (None, waiting)]:
        for kind_names in select(names).values():
            for name in kind_names:
                if name not in taken:
                    taken.add(name)
                    moves.append((source, name))
    return moves


def claim_folder_name(run_id: str) -> str:
    """A folder name for a run id (``scheduled__2025-06-01T00:15:00+00:00``), safe on any filesystem."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", run_id)


@dataclasses.dataclass(frozen=True)
class Claim:
    folder: Path
    files: dict[str, list[str]]


def claim(inbox: Path, run_id: str) -> Claim:
    """Move every waiting input file, and the leftovers of unfinished runs, into ``claimed/<run>/``."""
    inbox = Path(inbox)
    own = inbox / CLAIMED / claim_folder_name(run_id)
    old = sorted((d for d in (inbox / CLAIMED).glob("*") if d.is_dir() and d != own),
                 key=lambda d: (d.stat().st_mtime, d.name))
    moves = plan_claim(_files(inbox), [(d.name, _files(d)) for d in old], _files(own))
    if moves:
        own.mkdir(parents=True, exist_ok=True)
    for source, name in moves:
        try:
            os.rename((inbox if source is None else inbox / CLAIMED / source) / name, own / name)
        except FileNotFoundError:  # taken away since it was listed: nothing to claim
            pass
    for d in old:
        release(d)
    return Claim(own, select(_files(own)))


def release(folder: Path) -> None:
    """Remove a run's claimed folder once it is empty (every file loaded or rejected)."""
    try:
        Path(folder).rmdir()
    except OSError:  # absent, or still holds files that a later run claims
        pass


def _files(folder: Path) -> list[str]:
    return [p.name for p in folder.glob("*") if p.is_file()] if folder.is_dir() else []


@dataclasses.dataclass(frozen=True)
class KindLoad:
    """What one run did with its claimed files of one kind."""

    kind: str
    loaded: tuple[LoadResult, ...]
    rejected: tuple[dict, ...]  # {"file": name, "report": path of its report}

    def skip_reason(self) -> str:
        if self.rejected:
            return (f"every {self.kind} file was rejected: {', '.join(r['file'] for r in self.rejected)} "
                    f"(report_rejections fails the run)")
        return f"no {self.kind} files were claimed by this run"


def load_claimed(engine: sa.Engine, kind: str, folder: Path, inbox: Path) -> KindLoad:
    """Load the claimed files of ``kind`` in ``folder``, one transaction each, and file them in ``inbox``.

    A loaded file moves to ``processed/``, a rejected one to ``rejected/``, each beside a report.
    The report is written before the file moves: a file is only ever filed with its report.
    """
    folder, inbox = Path(folder), Path(inbox)
    loaded, rejected = [], []
    for name in select(_files(folder))[kind]:
        path = folder / name
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        try:
            r = ingest_file(engine, kind, path)
        except InputDataError as exc:
            target, report = inbox / REJECTED, f"REJECTED {stamp}\n{exc}\n"
            rejected.append({"file": name, "report": str(target / f"{name}.report.txt")})
        else:
            target = inbox / PROCESSED
            report = (f"LOADED {stamp}\n{r.rows_in_file} rows read, {r.rows_inserted} new rows loaded into "
                      f"{kind}\nsha256 {r.sha256}\n")
            loaded.append(r)
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{name}.report.txt").write_text(report)
        os.replace(path, target / name)
    return KindLoad(kind, tuple(loaded), tuple(rejected))


def event_extra(load: KindLoad, max_clients: int = MAX_CLIENTS_IN_EVENT) -> dict:
    """The Asset event extra of a load: files, rejected files, clients and the newest note date.

    ``clients`` is left out above ``max_clients`` (``n_clients`` is always there). ``max_note_date``
    (notes and concepts) is the newest date of the notes the loaded files hold or refer to: the day
    ``fast_scoring_on_upload`` scores the upload for.
    """
    clients = sorted({c for r in load.loaded for c in r.clients})
    extra = {"files": [Path(r.source).name for r in load.loaded], "rejected": [r["file"] for r in load.rejected],
             "n_clients": len(clients)}
    if len(clients) <= max_clients:
        extra["clients"] = clients
    newest = max((r.newest_note for r in load.loaded if r.newest_note is not None), default=None)
    if newest is not None:
        extra["max_note_date"] = newest.isoformat()
    return extra


def rejection_message(rejected: Sequence[dict]) -> str | None:
    """The failure message naming each rejected file and its report, or None when none was rejected."""
    if not rejected:
        return None
    lines = [f"- {r['file']}: see {r['report']}" for r in rejected]
    return (f"{len(rejected)} inbox file(s) rejected; nothing from them was loaded (the other files were):\n"
            + "\n".join(lines) + "\nFix each file as its report says and drop it into the inbox again.")
