"""The HTML report is one self-contained file: metrics with CIs, charts inline, worst and best examples."""

from __future__ import annotations

import base64
import re

from medvlm.evaluate.html import select_examples, write_html_report

METRICS = {
    "bleu4": 0.1234,
    "clinical_micro_f1_14": 0.5,
    "n": 4,
    "ci95": {"bleu4": [0.1, 0.15]},
    "per_observation": {"Cardiomegaly": {"f1": 0.8, "support": 3}, "Edema": {"f1": 0.2, "support": 1}},
}
EXAMPLES = [
    {"id": "s1", "prediction": "No effusion.", "reference": "Small left effusion.", "score": 0.1},
    {"id": "s2", "prediction": "Heart size normal.", "reference": "Heart size normal.", "score": 1.0},
    {"id": "s3", "prediction": "<script>alert(1)</script>", "reference": "Clear lungs.", "score": 0.5},
    {"id": "s4", "prediction": "Mild edema.", "reference": "Mild edema, improved.", "score": 0.7},
]


def test_report_is_self_contained_with_table_charts_and_examples(tmp_path):
    path = tmp_path / "report.html"
    write_html_report(METRICS, EXAMPLES, path, title="Report metrics", n_examples=1)
    page = path.read_text()
    assert "<style>" in page and "<link" not in page and "http://" not in page and "https://" not in page
    assert "bleu4" in page and "0.1234" in page and "[0.1000, 0.1500]" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2  # per-observation F1 bars and the score histogram
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    worst = page.index("Worst")
    best = page.index("Best")
    assert worst < page.index("Small left effusion.") < best < page.index("Heart size normal.")
    assert "<script>alert" not in page and "&lt;script&gt;" not in page  # s3 is neither worst nor best


def test_text_is_escaped(tmp_path):
    path = tmp_path / "r.html"
    write_html_report({"n": 1}, [dict(EXAMPLES[2], score=0.0)], path)
    page = path.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page


def test_worst_and_best_are_ranked_by_score_ignoring_missing_scores():
    examples = EXAMPLES + [{"id": "s5", "prediction": "", "reference": "", "score": float("nan")}]
    worst, best = select_examples(examples, 2)
    assert [e["id"] for e in worst] == ["s1", "s3"]
    assert [e["id"] for e in best] == ["s2", "s4"]


def test_per_observation_chart_leaves_out_observations_no_reference_has():
    from medvlm.evaluate.html import _per_observation_f1

    metrics = {"per_observation": {"Cardiomegaly": {"f1": 0.8, "support": 3},
                                   "Fracture": {"f1": 0.0, "support": 0},  # absent everywhere: not a miss
                                   "Edema": {"f1": 0.0, "support": 2}}}
    assert _per_observation_f1(metrics) == {"Cardiomegaly": 0.8, "Edema": 0.0}
