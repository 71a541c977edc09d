"""Classification metrics equal scikit-learn's, for binary, multi-class and multi-label tasks, and from files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as sk

from medvlm.evaluate.classification import auroc, classification_metrics, evaluate_classification_file


@pytest.fixture()
def multiclass():
    rng = np.random.default_rng(0)
    classes = ["cardiomegaly", "edema", "effusion", "normal"]
    y_true = rng.integers(0, 4, size=120)
    logits = rng.normal(size=(120, 4)) + 1.5 * np.eye(4)[y_true]
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_pred = scores.argmax(axis=1)
    return classes, y_true, y_pred, scores


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_multiclass_matches_sklearn(multiclass, average):
    classes, y_true, y_pred, scores = multiclass
    names_true = [classes[i] for i in y_true]
    names_pred = [classes[i] for i in y_pred]
    m = classification_metrics(names_true, names_pred, scores, classes=classes, average=average)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))
    assert m[f"f1_{average}"] == pytest.approx(sk.f1_score(y_true, y_pred, average=average, zero_division=0))
    assert m[f"precision_{average}"] == pytest.approx(sk.precision_score(y_true, y_pred, average=average, zero_division=0))
    assert m[f"recall_{average}"] == pytest.approx(sk.recall_score(y_true, y_pred, average=average, zero_division=0))
    assert m["auroc"] == pytest.approx(sk.roc_auc_score(y_true, scores, multi_class="ovr", average="macro"))
    assert m["per_class"]["edema"]["support"] == int((y_true == 1).sum())


def test_binary_with_one_score_per_sample_matches_sklearn():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, size=80)
    score = np.round(np.clip(0.35 * y_true + rng.normal(0.4, 0.25, size=80), 0, 1), 1)  # rounded: many ties
    y_pred = (score >= 0.5).astype(int)
    m = classification_metrics(list(y_true), list(y_pred), score, average="binary")
    assert m["f1_binary"] == pytest.approx(sk.f1_score(y_true, y_pred))
    assert m["auroc"] == pytest.approx(sk.roc_auc_score(y_true, score))
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))


def test_multilabel_matches_sklearn_per_label_and_averaged():
    rng = np.random.default_rng(2)
    truth = rng.random((60, 5)) < 0.3
    scores = np.clip(truth * 0.4 + rng.random((60, 5)) * 0.7, 0, 1)
    for average in ("macro", "micro", "weighted"):
        m = classification_metrics(truth, None, scores, classes=list("abcde"), average=average, threshold=0.5)
        pred = scores >= 0.5
        assert m[f"f1_{average}"] == pytest.approx(sk.f1_score(truth, pred, average=average, zero_division=0))
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(truth, pred))  # subset accuracy
    per_label = sk.roc_auc_score(truth, scores, average=None)
    assert [m["per_class"][c]["auroc"] for c in "abcde"] == pytest.approx(list(per_label))
    assert m["auroc"] == pytest.approx(per_label.mean())


def test_multilabel_from_class_sets():
    m = classification_metrics([["edema"], ["edema", "effusion"], []], [["edema"], ["edema"], ["effusion"]])
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["per_class"]["effusion"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "auroc": None}


def test_auroc_is_none_when_only_one_class_is_present():
    assert auroc(np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9])) is None
    assert auroc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5


def test_binary_average_needs_two_classes():
    with pytest.raises(ValueError, match="exactly two classes"):
        classification_metrics(["a", "b", "c"], ["a", "b", "b"], average="binary")


def test_files_joined_by_id_and_errors_name_the_id(tmp_path):
    preds = tmp_path / "preds.csv"
    preds.write_text("id,prediction,score_benign,score_malignant\n"
                     "c1,malignant,0.2,0.8\nc2,benign,0.7,0.3\nc3,benign,0.6,0.4\n")
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": i, "label": y}) + "\n"
                              for i, y in [("c1", "malignant"), ("c2", "benign"), ("c3", "malignant")]))
    out = tmp_path / "cls.json"
    m = evaluate_classification_file(preds, labels, out, average="binary", positive_class="malignant")
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["recall_binary"] == pytest.approx(0.5)
    assert m["auroc"] == 1.0
    assert json.loads(out.read_text())["f1_binary"] == pytest.approx(m["f1_binary"])

    labels.write_text(json.dumps({"id": "c1", "label": "malignant"}) + "\n")
    with pytest.raises(ValueError, match="'c2' has no label"):
        evaluate_classification_file(preds, labels)


def test_cli_cls_prints_the_summary(tmp_path, capsys):
    from medvlm.cli import main

    rows = [{"id": 1, "label": "a", "prediction": "a"}, {"id": 2, "label": "b", "prediction": "a"}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["evaluate", "cls", "--predictions", str(path), "--average", "micro"]) == 0
    assert "f1_micro" in capsys.readouterr().out


def test_multilabel_csv_with_score_columns(tmp_path):
    path = tmp_path / "ml.csv"
    path.write_text("id,label,score_edema,score_effusion\n"
                    "1,edema|effusion,0.9,0.7\n2,,0.2,0.1\n3,effusion,0.6,0.4\n")
    m = evaluate_classification_file(path, multilabel=True, threshold=0.5)
    # predicted sets from scores >= 0.5: {edema, effusion}, {}, {edema}
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["per_class"]["edema"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["effusion"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2, "auroc": 1.0})
