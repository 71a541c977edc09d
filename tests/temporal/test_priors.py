"""Prior retrieval by Libra's rule on a hand-made studies table."""

from __future__ import annotations

import json

import pytest

from medvlm.cli import main
from medvlm.temporal import PriorColumns, find_priors

HEADER = "subject_id,study_id,StudyDate,StudyTime,path,ViewPosition\n"
ROWS = [
    # subject 1: two same-day studies, then a later day with a tie on time (table order decides)
    "1,s10,20200101,080000,p1/a.jpg,PA",
    "1,s11,20200101,140000.5,p1/b.jpg,AP",
    "1,s12,20200105,90000,p1/c.jpg,AP",
    "1,s13,20200105,090000,p1/d.jpg,LATERAL",
    "1,s14,20200301,100000,p1/e.jpg,PA",
    # subject 2: one study only
    "2,s20,20210101,120000,p2/a.jpg,PA",
    # subject 3: rows out of order in the table; a big gap
    "3,s31,2022-06-01,,p3/b.jpg,AP",
    "3,s30,2020-01-01,,p3/a.jpg,AP",
]


@pytest.fixture
def studies(tmp_path):
    path = tmp_path / "studies.csv"
    path.write_text(HEADER + "\n".join(ROWS) + "\n")
    return path


def _prior_of(pairs):
    return {p.study_id: p.prior_study_id for p in pairs}


def test_each_study_gets_the_last_image_of_the_latest_earlier_day(studies):
    pairs = find_priors(studies)
    assert _prior_of(pairs) == {
        "s10": None, "s11": None,  # the first day: same-day studies never pair with each other
        "s12": "s11", "s13": "s11",  # both share the prior: the last image of 2020-01-01
        "s14": "s13",  # s12 and s13 tie on time: table order, so s13 is the day's last
        "s20": None,
        "s30": None, "s31": "s30",  # sorted by date, whatever the table order
    }
    s12 = next(p for p in pairs if p.study_id == "s12")
    assert (s12.prior_image, s12.gap_days, s12.prior_study_date) == ("p1/b.jpg", 4, "2020-01-01")


def test_views_filter_before_pairing_and_gaps_drop_old_priors(studies):
    pairs = find_priors(studies, views=["ap", "PA"], max_gap_days=60)
    assert _prior_of(pairs) == {"s10": None, "s11": None, "s12": "s11", "s14": "s12", "s20": None,
                                "s30": None, "s31": None}
    assert next(p for p in pairs if p.study_id == "s14").gap_days == 56


def test_column_names_are_configurable_and_missing_ones_named(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("patient,exam,date,file\n7,e1,20200101,x.png\n7,e2,20200102,y.png\n")
    columns = PriorColumns(subject="patient", study="exam", date="date", path="file")
    assert _prior_of(find_priors(path, columns=columns)) == {"e1": None, "e2": "e1"}
    with pytest.raises(ValueError, match=r"missing column\(s\) \['subject_id'"):
        find_priors(path)


def test_bad_dates_name_the_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "1,s1,2020/01/01,,a.jpg,PA\n")
    with pytest.raises(ValueError, match=r"bad.csv row 1: date '2020/01/01'"):
        find_priors(path)


def test_cli_writes_pairs_jsonl(studies, tmp_path, capsys):
    out = tmp_path / "pairs.jsonl"
    assert main(["priors", str(studies), "--out", str(out), "--view", "AP,PA"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 7 and rows[2]["image"] == "p1/c.jpg" and rows[2]["prior_image"] == "p1/b.jpg"
    assert "with prior" in capsys.readouterr().out
    assert main(["priors", str(tmp_path / "none.csv"), "--out", str(out)]) == 2
