"""Prior retrieval: pair each image of a studies table with the prior image Libra would give it.

    pairs = find_priors("studies.csv", views=("AP", "PA"), max_gap_days=365)
    write_pairs(pairs, "pairs.jsonl")

Libra's rule (its README's MIMIC-CXR pairing), implemented exactly:
1. rows (one per image) are sorted by subject, StudyDate, StudyTime; rows that tie on all three keep the table's
   order (a stable sort, as pandas' multi-column sort_values);
2. within a subject, the prior of a row is the LAST row (in that order) of the latest EARLIER day;
3. every row of one day shares the prior of that day's first row, so same-day studies never pair with each
   other (an AP at 08:00 and a follow-up at 14:00 both compare with yesterday's last image);
4. a subject's first day has no prior (prior = None; at training / inference a pair model then uses its
   missing-prior mode: Libra's dummy prior, the current image again).
medvlm's options on top, applied in this order: `views` keeps only rows whose view is listed (before pairing, so
a prior has an allowed view too); `max_gap_days` drops a prior more than that many days before the current day
(the row keeps prior = None).

Columns (MIMIC-CXR metadata names by default, configurable with PriorColumns): subject_id, study_id, StudyDate
(YYYYMMDD as MIMIC writes it, or YYYY-MM-DD), StudyTime (HHMMSS[.ffffff], optional column), path, ViewPosition
(needed only with `views`).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from medvlm.fileio import atomic_write_jsonl


@dataclass(frozen=True)
class PriorColumns:
    """Column names of the studies table."""

    subject: str = "subject_id"
    study: str = "study_id"
    date: str = "StudyDate"
    time: str = "StudyTime"
    path: str = "path"
    view: str = "ViewPosition"


@dataclass
class PriorPair:
    """One row of the table with its prior (None fields when it has none). gap_days: current day - prior day."""

    subject_id: str
    study_id: str
    image: str
    study_date: str
    view: str | None
    prior_image: str | None = None
    prior_study_id: str | None = None
    prior_study_date: str | None = None
    gap_days: int | None = None
    row: int = 0  # 1-based data row in the table (header excluded)


def _parse_date(value: str, where: str) -> dt.date:
    text = value.strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    raise ValueError(f"{where}: date {value!r} is neither YYYYMMDD nor YYYY-MM-DD")


def _parse_time(value: str, where: str) -> float:
    """HHMMSS[.ffffff] (MIMIC, leading zeros may be missing: 94501.5 = 09:45:01.5) -> seconds; '' -> 0."""
    text = value.strip()
    if not text:
        return 0.0
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{where}: time {value!r} is not HHMMSS[.ffffff]") from None
    whole = int(number)
    hours, minutes, seconds = whole // 10000, whole // 100 % 100, whole % 100
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"{where}: time {value!r} is not a time of day (HHMMSS)")
    return hours * 3600 + minutes * 60 + seconds + (number - whole)


def read_studies(path: str | os.PathLike, columns: PriorColumns = PriorColumns(), need_view: bool = False) -> list[dict]:
    """The table's rows, with the needed columns checked (a missing column or empty value is an error)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        needed = [columns.subject, columns.study, columns.date, columns.path] + ([columns.view] if need_view else [])
        missing = [c for c in needed if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; the table has {header}. Name the columns with "
                             "--subject-column / --date-column / ... (PriorColumns)")
        rows = []
        for number, row in enumerate(reader, start=1):
            for column in needed:
                if not (row.get(column) or "").strip():
                    raise ValueError(f"{path} row {number}: empty {column!r}; every row needs it")
            rows.append({**row, "_row": number})
    return rows


def find_priors(
    studies: str | os.PathLike | Sequence[dict],
    *,
    columns: PriorColumns = PriorColumns(),
    views: Iterable[str] | None = None,
    max_gap_days: int | None = None,
) -> list[PriorPair]:
    """Every kept row with its prior by Libra's rule (module docstring), in sorted (subject, date, time) order.

    studies: a CSV file or rows as dicts (column -> value). views: keep only these view positions (e.g. AP, PA;
    compared case-insensitively). max_gap_days: no prior further back than this.
    """
    where_file = os.fspath(studies) if isinstance(studies, (str, os.PathLike)) else "studies"
    view_set = {v.strip().upper() for v in views} if views else None
    if max_gap_days is not None and max_gap_days < 0:
        raise ValueError(f"max_gap_days must be >= 0, got {max_gap_days}")
    if isinstance(studies, (str, os.PathLike)):
        rows = read_studies(studies, columns, need_view=view_set is not None)
    else:
        rows = [{**r, "_row": r.get("_row", i)} for i, r in enumerate(studies, start=1)]
    keyed = []
    for order, row in enumerate(rows):
        where = f"{where_file} row {row['_row']}"
        view = (row.get(columns.view) or "").strip() or None
        if view_set is not None and (view or "").upper() not in view_set:
            continue
        day = _parse_date(str(row[columns.date]), where)
        seconds = _parse_time(str(row.get(columns.time) or ""), where)
        keyed.append(((str(row[columns.subject]), day, seconds, order), row, view))
    keyed.sort(key=lambda item: item[0])  # order last: ties keep the table's order

    pairs: list[PriorPair] = []
    previous: tuple | None = None  # (key, row) of the row before, same subject
    day_prior: tuple | None = None  # the prior shared by the current day's rows
    for key, row, view in keyed:
        subject, day = key[0], key[1]
        if previous is None or previous[0][0] != subject:
            day_prior, current_day = None, None
        else:
            current_day = previous[0][1]
        if current_day is None or day > current_day:
            day_prior = previous if (previous is not None and previous[0][0] == subject) else None
        pair = PriorPair(subject_id=subject, study_id=str(row[columns.study]), image=str(row[columns.path]),
                         study_date=day.isoformat(), view=view, row=int(row["_row"]))
        if day_prior is not None:
            prior_key, prior_row = day_prior
            gap = (day - prior_key[1]).days
            if max_gap_days is None or gap <= max_gap_days:
                pair.prior_image = str(prior_row[columns.path])
                pair.prior_study_id = str(prior_row[columns.study])
                pair.prior_study_date = prior_key[1].isoformat()
                pair.gap_days = gap
        pairs.append(pair)
        previous = (key, row)
    return pairs


def write_pairs(pairs: Sequence[PriorPair], out: str | os.PathLike) -> Path:
    """One JSON line per row: {subject_id, study_id, image, study_date, view, prior_image, prior_study_id,
    prior_study_date, gap_days, row} (atomic)."""
    atomic_write_jsonl(out, [asdict(p) for p in pairs])
    return Path(out)


def summary(pairs: Sequence[PriorPair]) -> dict[str, int]:
    """Counts for the CLI's table."""
    with_prior = sum(p.prior_image is not None for p in pairs)
    return {"rows": len(pairs), "with prior": with_prior, "without prior": len(pairs) - with_prior,
            "subjects": len({p.subject_id for p in pairs})}
