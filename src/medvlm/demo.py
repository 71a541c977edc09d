"""`medvlm demo`: the whole path on a laptop CPU, on the synthetic chest X-ray benchmark.

  1. synthesise a CXR dataset with ground truth                     OUT/data/
  2. train the tiny preset: align (connector only), then finetune   OUT/align/, OUT/finetune/ (model in finetune/model)
  3. answer the test questions (reports and VQA)                    OUT/answers.jsonl
  4. score them, beside two controls:                               OUT/metrics.json
       - the most frequent training answer (for reports: the most frequent training report) for every question
       - the same model given blank images (shows that the model reads the image)
  5. write OUT/report.html: metrics table, loss curves, images with generated and reference reports.

Every stage resumes: rerunning the same command reuses the data, finishes training from its last checkpoint,
and answers only the questions not answered yet. `fresh=True` starts over.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medvlm.fileio import atomic_write_json, atomic_write_text


@dataclass
class DemoConfig:
    out: str = "demo_out"
    studies: int = 1000  # synthetic CXR studies (10% of patients are the test set)
    size_px: int = 64
    seed: int = 0
    align_steps: int = 30
    finetune_epochs: float = 4.0
    batch_size: int = 32
    align_lr: float = 1e-3
    finetune_lr: float = 1e-3
    # tiny preset sizes (medvlm.models.presets.TinyPresetConfig); 16 px patches: 16 image tokens at 64 px
    preset_options: dict = field(default_factory=lambda: {"patch_size": 16})
    max_new_tokens: int = 96
    validate_every_steps: int = 40  # generation-based validation on 48 test questions; best checkpoint kept
    meteor: bool = True  # METEOR 1.5 needs Java
    bertscore: bool = True
    workers: int = 2
    fresh: bool = False
    progress: bool = True


@dataclass
class DemoResult:
    out: Path
    metrics: dict  # {"model": {...}, "blank_images": {...}, "most_frequent": {...}}
    seconds: dict  # per stage
    report_html: Path


SUMMARY_KEYS = ("clinical_micro_f1_14", "clinical_macro_f1_14", "clinical_micro_f1_5", "bleu4", "rouge_l", "cider",
                "meteor", "bertscore_minilm_f1", "closed_accuracy", "open_exact_match", "exact_match")


def run_demo(cfg: DemoConfig) -> DemoResult:
    from medvlm.synth.cxr import CXRConfig
    from medvlm.synth.dataset import write_dataset
    from medvlm.train import TrainConfig, train

    out = Path(cfg.out)
    if cfg.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    atomic_write_json(out / "demo_config.json", dataclasses.asdict(cfg))

    _stage("1/5 synthesise the chest X-ray benchmark")
    t = time.perf_counter()
    data = out / "data"
    if not _dataset_matches(data, cfg):
        if data.exists():
            shutil.rmtree(data)
        write_dataset(data, "cxr", cfg.studies, seed=cfg.seed, config=CXRConfig(size_px=cfg.size_px),
                      workers=cfg.workers, progress=cfg.progress)
    seconds["synthesise"] = time.perf_counter() - t

    _stage("2/5 train the tiny preset: align, then finetune")
    t = time.perf_counter()
    preset_options = {"image_size": cfg.size_px, **cfg.preset_options}
    common = dict(
        data={"train": str(data / "train.json"), "image_folder": str(data)},
        run={"seed": cfg.seed, "progress": cfg.progress, "log_every_steps": 10},
    )
    align_cfg = _train_config(TrainConfig, {
        **common, "recipe": "align",
        "model": {"preset": "tiny", "preset_options": preset_options},
        "optim": {"lr": cfg.align_lr, "batch_size": cfg.batch_size, "max_steps": cfg.align_steps, "warmup_ratio": 0.1},
        "run": {**common["run"], "output_dir": str(out / "align"), "cache_vision_features": True},
    })
    align = train(align_cfg)
    finetune_cfg = _train_config(TrainConfig, {
        **common, "recipe": "finetune",
        "model": {"init_from": str(align.model_dir), "preset": None},
        "components": {"vision": "full", "connector": "full", "language": "full"},
        "optim": {"lr": cfg.finetune_lr, "batch_size": cfg.batch_size, "epochs": cfg.finetune_epochs,
                  "warmup_ratio": 0.05},
        "data": {**common["data"], "validation": str(data / "test.jsonl")},
        # checkpoint choice by the teacher-forced validation loss: smooth, unlike F1 on a few dozen answers
        "validation": {"every_steps": cfg.validate_every_steps, "max_samples": 48,
                       "max_new_tokens": cfg.max_new_tokens, "metric": "loss"},
        "run": {**common["run"], "output_dir": str(out / "finetune")},
    })
    finetune = train(finetune_cfg)
    seconds["train"] = time.perf_counter() - t

    _stage("3/5 answer the test questions")
    t = time.perf_counter()
    import medvlm
    from medvlm.infer.options import GenerationOptions
    from medvlm.infer.predict import predict

    model, processor = medvlm.load(finetune.model_dir)
    options = GenerationOptions(max_new_tokens=cfg.max_new_tokens)
    questions = data / "test.jsonl"
    predict(model, processor, questions, out / "answers.jsonl", image_folder=data, batch_size=32,
            model_id="medvlm-demo-tiny", options=options, progress=cfg.progress)
    blank = _blank_image_folder(data, out / "controls" / "blank_images")
    predict(model, processor, questions, out / "controls" / "blank_images.jsonl", image_folder=blank, batch_size=32,
            model_id="medvlm-demo-tiny-blank", options=options, progress=cfg.progress)
    _most_frequent_answers(data / "train.json", questions, out / "controls" / "most_frequent.jsonl")
    seconds["predict"] = time.perf_counter() - t

    _stage("4/5 evaluate")
    t = time.perf_counter()
    metrics = {
        "model": _score(out / "answers.jsonl", cfg),
        "blank_images": _score(out / "controls" / "blank_images.jsonl", cfg),
        "most_frequent": _score(out / "controls" / "most_frequent.jsonl", cfg),
    }
    seconds["evaluate"] = time.perf_counter() - t
    atomic_write_json(out / "metrics.json", {"metrics": metrics, "seconds": seconds,
                                             "dataset": json.loads((data / "dataset.json").read_text())["counts"]})

    _stage("5/5 write the report")
    report = out / "report.html"
    write_demo_report(report, metrics, out, data)
    print(summary_table(metrics, seconds))
    print(f"\nreport: {report}\nmodel:  {finetune.model_dir}\nanswers: {out / 'answers.jsonl'}")
    return DemoResult(out=out, metrics=metrics, seconds=seconds, report_html=report)


def _stage(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _train_config(cls, data: dict):
    from medvlm.config import build_config

    return build_config(cls, data)


def _dataset_matches(data: Path, cfg: DemoConfig) -> bool:
    card = data / "dataset.json"
    if not card.is_file():
        return False
    info = json.loads(card.read_text())
    return info.get("n") == cfg.studies and info.get("seed") == cfg.seed and info["config"]["size_px"] == cfg.size_px


def _blank_image_folder(data: Path, blank: Path) -> Path:
    """The test images replaced by black images of the same size, under the same relative paths."""
    from PIL import Image

    from medvlm.records import load_questions

    for q in load_questions(data / "test.jsonl"):
        for rel in q.images:
            target = blank / rel
            if not target.exists():
                with Image.open(data / rel) as im:
                    size, mode = im.size, im.mode
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.new(mode, size).save(target)
    return blank


def _most_frequent_answers(train_file: Path, questions_file: Path, out: Path) -> None:
    """Control: every question gets the most frequent training answer to the same question text (reports: the
    most frequent training report), ignoring the image."""
    from medvlm.records import AnswerRecord, load_questions, load_training, write_answers

    per_question: dict[str, Counter] = {}
    reports: Counter = Counter()
    for record in load_training(train_file):
        turns = record.conversations
        for human, gpt in zip(turns[0::2], turns[1::2], strict=False):
            text = human.value.replace("<image>", "").strip()
            per_question.setdefault(text, Counter())[gpt.value] += 1
            if record.metadata.get("task") == "report":
                reports[gpt.value] += 1
    top_report = reports.most_common(1)[0][0] if reports else ""
    answers = []
    for q in load_questions(questions_file):
        if q.answer_type == "report":
            text = top_report
        else:
            counts = per_question.get(q.text.replace("<image>", "").strip())
            text = counts.most_common(1)[0][0] if counts else ""
        answers.append(AnswerRecord(question_id=q.question_id, prompt=q.text, text=text, reference=q.reference,
                                    answer_type=q.answer_type, answer_id=f"most-frequent-{q.question_id}",
                                    model_id="most-frequent", metadata=dict(q.metadata)))
    write_answers(out, answers)


def _score(answers_file: Path, cfg: DemoConfig) -> dict:
    from medvlm.evaluate.answers import score_by_answer_type
    from medvlm.records import load_answers

    answers = load_answers(answers_file)
    return score_by_answer_type([a.text for a in answers], [a.reference for a in answers],
                                [a.answer_type for a in answers], meteor=cfg.meteor, bertscore=cfg.bertscore)


def summary_table(metrics: dict, seconds: dict) -> str:
    columns = list(metrics)
    keys = [k for k in SUMMARY_KEYS if any(k in metrics[c] for c in columns)]
    width = max(len(k) for k in keys)
    lines = [f"{'metric':<{width}}  " + "  ".join(f"{c:>14}" for c in columns)]
    lines.append("-" * len(lines[0]))
    for k in keys:
        cells = [metrics[c].get(k) for c in columns]
        lines.append(f"{k:<{width}}  " + "  ".join(f"{v:>14.4f}" if isinstance(v, float) else f"{'':>14}" for v in cells))
    lines.append("")
    lines.append("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + f" (total {sum(seconds.values()):.0f} s)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# the HTML report


def _loss_curves_png(out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medvlm.evaluate.html import _png_data_uri
    from medvlm.train.logger import read_log

    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    offset = 0
    for stage in ("align", "finetune"):
        rows = [r for r in read_log(out / stage) if r["kind"] == "train"]
        if rows:
            ax.plot([offset + r["step"] for r in rows], [r["loss"] for r in rows], label=stage)
            offset += rows[-1]["step"]
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (per token)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    uri = _png_data_uri(fig)
    plt.close(fig)
    return uri


def _image_uri(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L").resize((160, 160))
        buffer = io.BytesIO()
        im.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_demo_report(path: Path, metrics: dict, out: Path, data: Path, n_examples: int = 8) -> None:
    from medvlm.evaluate.html import _CSS, _bar_chart
    from medvlm.records import load_answers, load_questions

    columns = list(metrics)
    keys = [k for k in SUMMARY_KEYS if any(k in metrics[c] for c in columns)]
    head = "<tr><th>metric</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
    rows = []
    for k in keys:
        cells = "".join(
            f"<td>{metrics[c][k]:.4f}</td>" if isinstance(metrics[c].get(k), float) else "<td></td>" for c in columns
        )
        rows.append(f"<tr><td>{k}</td>{cells}</tr>")
    table = f'<table class="metrics">{head}{"".join(rows)}</table>'
    per_obs = {k: v.get("f1") for k, v in (metrics["model"].get("per_observation") or {}).items()}
    chart = _bar_chart("Clinical F1 per observation (model)", per_obs) if per_obs else None

    answers = [a for a in load_answers(out / "answers.jsonl") if a.answer_type == "report"][:n_examples]
    blank = {a.question_id: a.text for a in load_answers(out / "controls" / "blank_images.jsonl")}
    images = {q.question_id: q.images for q in load_questions(data / "test.jsonl")}
    cards = []
    for a in answers:
        paths = [data / p for p in images.get(a.question_id, [])]
        img = "".join(f'<img alt="study" src="{_image_uri(p)}">' for p in paths if p.is_file())
        cards.append(
            f'<div class="card"><div class="head"><span>{html.escape(str(a.question_id))}</span></div>'
            f'<div style="display:flex;gap:12px">{img}<div style="flex:1">'
            f'<div class="label">generated</div><div class="text">{html.escape(a.text)}</div>'
            f'<div class="label">reference</div><div class="text">{html.escape(a.reference or "")}</div>'
            f'<div class="label">same model, blank image</div><div class="text">{html.escape(blank.get(a.question_id, ""))}</div>'
            "</div></div></div>"
        )
    body = [
        "<h1>medvlm demo: tiny model on the synthetic chest X-ray benchmark</h1>",
        '<div class="meta">Controls: <b>blank_images</b> = the same model given black images; <b>most_frequent</b> = '
        "the most frequent training answer (report) for every question. Clinical F1 from the offline CheXpert "
        "labeler; BERTScore uses all-MiniLM-L6-v2 (not comparable with roberta-large numbers in papers).</div>",
        "<h2>Metrics</h2>", table,
        "<h2>Training loss</h2>", f'<div class="charts"><img alt="loss curves" src="{_loss_curves_png(out)}"></div>',
    ]
    if chart:
        body += ["<h2>Clinical F1 per observation</h2>", f'<div class="charts"><img alt="per observation" src="{chart}"></div>']
    body += ["<h2>Test studies: generated and reference reports</h2>", "".join(cards)]
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>medvlm demo</title>'
            f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")
    atomic_write_text(path, page)

