"""`medvlm demo`: the whole path on a laptop CPU, on the synthetic chest X-ray benchmark.

  1. synthesise a CXR dataset with ground truth                     OUT/data/
  2. train the tiny preset: encoder (the 14 CheXpert labels of each   OUT/encoder/, OUT/align/, OUT/finetune/
     training report), align (connector only), then finetune         (model in finetune/model)
     (connector and language model, finding tokens teacher-forced    (configs/demo_*.yaml: the same recipes)
     with the report labels; the taught encoder is kept)
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

PRESETS = ("tiny", "pretrained")


@dataclass
class DemoConfig:
    out: str = "demo_out"
    preset: str = "tiny"  # "tiny" (from scratch) or "pretrained" (EfficientNet-Lite0 + SmolLM2 with LoRA)
    studies: int = 3000  # synthetic CXR studies (one patient each)
    test_fraction: float = 0.034  # of the patients: 102 test studies (prediction time grows with the test set)
    # 128 px with 32 px patches (16 image tokens): the encoder finds small findings (lesion, pneumothorax) far
    # better than at 64 px (docs/training.md, "Known limits")
    size_px: int = 128
    patch_size: int | None = None  # the tiny encoder's patch side; None: size_px // 4 (16 image tokens)
    seed: int = 0
    # the tiny preset: encoder (report labels), align, then finetune connector + LM (encoder kept)
    encoder_steps: int = 1000  # 0: no encoder stage; the finetune stage then trains the encoder too
    encoder_lr: float = 2e-3
    encoder_pooling: str = "mean_max"  # what its label head reads (medvlm.train.encoder_stage.POOLINGS)
    align_steps: int = 10
    finetune_steps: int = 1120
    batch_size: int = 32  # encoder and align stages
    finetune_batch_size: int = 16  # more, smaller steps teach the language model more per second (docs/training.md)
    align_lr: float = 1e-3
    finetune_lr: float = 2e-3
    # probability that a training image's finding tokens carry its report's labels in the finetune stage
    # (TrainConfig.findings.teacher_forcing): the language model learns to write what the tokens say
    teacher_forcing: float = 1.0
    # tiny preset sizes (medvlm.models.presets.TinyPresetConfig; patch_size from the field above): the findings
    # connector's 14 finding tokens after the 16 image tokens: its classifier is the encoder stage's label head,
    # kept as it is, and the language model gets its decisions at p >= 0.5 (docs/training.md, "Encoder stage");
    # in the finetune stage's training the tokens carry the report's labels instead (teacher_forcing above)
    preset_options: dict = field(default_factory=lambda: {
        "vision_stem": "conv", "vision_hidden_size": 128, "connector_type": "findings",
        "connector_config": {"pooling": "mean_max", "train_classifier": False, "threshold": 0.5}})
    max_new_tokens: int = 96
    validate_every_steps: int = 560  # generation-based validation on 48 test questions; best checkpoint kept
    # the pretrained preset: one finetune stage (encoder frozen, features cached; connector full; LM LoRA)
    pretrained_steps: int = 48  # ~10 s per step of batch 8 on 2 cores
    pretrained_batch_size: int = 8
    pretrained_lr: float = 1e-3
    pretrained_image_size: int = 128  # EfficientNet's stride-32 grid: 16 image tokens
    pretrained_questions_per_type: int = 16  # generation with a 135M LM on CPU is slow: the first N per type
    meteor: bool = True  # METEOR 1.5 needs Java
    bertscore: bool = True
    workers: int = 2
    fresh: bool = False
    progress: bool = True


@dataclass
class DemoResult:
    out: Path
    metrics: dict  # {"model": {...}, "blank_images": {...}, "most_frequent": {...}} (pretrained: more columns)
    seconds: dict  # per stage
    report_html: Path
    model_dir: Path


SUMMARY_KEYS = ("clinical_micro_f1_14", "clinical_macro_f1_14", "clinical_micro_f1_5", "bleu4", "rouge_l", "cider",
                "meteor", "bertscore_minilm_f1", "closed_accuracy", "open_exact_match", "exact_match")


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Run the demo for `cfg.preset` into `cfg.out`; the tiny and the pretrained runs share OUT/data and one
    OUT/report.html, which shows whichever of the two have run."""
    if cfg.preset not in PRESETS:
        raise ValueError(f"DemoConfig.preset={cfg.preset!r}: use one of {PRESETS}")
    out = Path(cfg.out)
    run_dir = out if cfg.preset == "tiny" else out / "pretrained"  # the tiny run owns OUT, pretrained a subfolder
    if cfg.fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    atomic_write_json(run_dir / "demo_config.json", dataclasses.asdict(cfg))

    _stage("1/5 synthesise the chest X-ray benchmark")
    t = time.perf_counter()
    data = _synthesise(cfg, out / "data")
    seconds["synthesise"] = time.perf_counter() - t

    t = time.perf_counter()
    if cfg.preset == "tiny":
        _stage("2/5 train the tiny preset: encoder on report labels, align, then finetune")
        model_dir = _train_tiny(cfg, data, out)
    else:
        _stage("2/5 train the pretrained preset: connector in full, SmolLM2 with LoRA, encoder frozen")
        model_dir = _train_pretrained(cfg, data, run_dir)
    seconds["train"] = time.perf_counter() - t

    _stage("3/5 answer the test questions")
    t = time.perf_counter()
    questions = _test_questions(cfg, data, run_dir)
    model_id = f"medvlm-demo-{cfg.preset}"
    import medvlm

    model, processor = medvlm.load(model_dir)
    _answer(model, processor, questions, data, run_dir / "answers.jsonl", model_id, cfg)
    blank = _blank_image_folder(data, out / "controls" / "blank_images")
    _answer(model, processor, questions, blank, run_dir / "controls" / "blank_images.jsonl", f"{model_id}-blank", cfg)
    del model
    _most_frequent_answers(data / "train.json", questions, run_dir / "controls" / "most_frequent.jsonl")
    seconds["predict"] = time.perf_counter() - t

    _stage("4/5 evaluate")
    t = time.perf_counter()
    columns = {"model": run_dir / "answers.jsonl", "blank_images": run_dir / "controls" / "blank_images.jsonl",
               "most_frequent": run_dir / "controls" / "most_frequent.jsonl"}
    if cfg.preset == "pretrained" and (out / "answers.jsonl").is_file():
        columns["tiny"] = out / "answers.jsonl"  # the tiny demo's answers to the same questions
    ids = {q.question_id for q in questions}
    metrics = {name: _score(path, cfg, ids) for name, path in columns.items()}
    seconds["evaluate"] = time.perf_counter() - t
    atomic_write_json(run_dir / "metrics.json", {
        "preset": cfg.preset, "metrics": metrics, "seconds": seconds, "questions": len(questions),
        "dataset": json.loads((data / "dataset.json").read_text())["counts"]})

    _stage("5/5 write the report")
    report = out / "report.html"
    write_demo_report(report, out)
    print(summary_table(metrics, seconds))
    print(f"\nreport: {report}\nmodel:  {model_dir}\nanswers: {run_dir / 'answers.jsonl'}")
    return DemoResult(out=out, metrics=metrics, seconds=seconds, report_html=report, model_dir=model_dir)


def _synthesise(cfg: DemoConfig, data: Path) -> Path:
    from medvlm.synth.cxr import CXRConfig
    from medvlm.synth.dataset import write_dataset

    if not _dataset_matches(data, cfg):
        if data.exists():
            shutil.rmtree(data)
        write_dataset(data, "cxr", cfg.studies, seed=cfg.seed, config=CXRConfig(size_px=cfg.size_px),
                      test_fraction=cfg.test_fraction, workers=cfg.workers, progress=cfg.progress)
    return data


def tiny_stage_recipes(cfg: DemoConfig, data: Path, out: Path) -> dict[str, dict]:
    """The tiny demo's training stages as recipes (TrainConfig fields), in order: encoder (unless
    encoder_steps=0), align, finetune; configs/demo_*.yaml hold them for the default DemoConfig."""
    preset_options = {"image_size": cfg.size_px, "patch_size": cfg.patch_size or max(cfg.size_px // 4, 1),
                      **cfg.preset_options}
    common = dict(
        # reports (~100 tokens) and multi-turn VQA (~150, up to ~400) batched by length: far less padding
        data={"train": str(data / "train.json"), "image_folder": str(data), "group_by_length": True},
        run={"seed": cfg.seed, "progress": cfg.progress, "log_every_steps": 10},
    )
    recipes = {}
    start = {"preset": "tiny", "preset_options": preset_options}
    if cfg.encoder_steps:
        recipes["encoder"] = {
            **common, "recipe": "encoder", "model": start, "components": {"vision": "full"},
            "encoder": {"pooling": cfg.encoder_pooling},
            "optim": {"lr": cfg.encoder_lr, "batch_size": cfg.batch_size, "max_steps": cfg.encoder_steps,
                      "warmup_ratio": 0.05},
            "run": {**common["run"], "output_dir": str(out / "encoder"), "log_every_steps": 50},
        }
        start = {"init_from": str(out / "encoder" / "model"), "preset": None}  # train() exports RUN/model
    recipes["align"] = {
        **common, "recipe": "align",
        "model": start,
        "optim": {"lr": cfg.align_lr, "batch_size": cfg.batch_size, "max_steps": cfg.align_steps, "warmup_ratio": 0.1},
        "run": {**common["run"], "output_dir": str(out / "align"), "cache_vision_features": True,
                "feature_cache_dir": str(out / "feature_cache")},
    }
    recipes["finetune"] = {
        **common, "recipe": "finetune",
        "model": {"init_from": str(out / "align" / "model"), "preset": None},
        # an encoder taught the findings is kept as it is (and its features cached); else it learns here too
        "components": {"vision": "frozen" if cfg.encoder_steps else "full", "connector": "full", "language": "full"},
        "optim": {"lr": cfg.finetune_lr, "batch_size": cfg.finetune_batch_size, "max_steps": cfg.finetune_steps,
                  "warmup_ratio": 0.05},
        "data": {**common["data"], "validation": str(data / "test.jsonl")},
        "findings": {"teacher_forcing": cfg.teacher_forcing if _has_finding_tokens(cfg) else 0.0},
        # checkpoint choice by the teacher-forced validation loss: smooth, unlike F1 on a few dozen answers
        "validation": {"every_steps": cfg.validate_every_steps, "max_samples": 48,
                       "max_new_tokens": cfg.max_new_tokens, "metric": "loss"},
        # the align stage's cache: the same frozen encoder, so its images are encoded once
        "run": {**common["run"], "output_dir": str(out / "finetune"), "cache_vision_features": bool(cfg.encoder_steps),
                "feature_cache_dir": str(out / "feature_cache")},
    }
    return recipes


def _train_tiny(cfg: DemoConfig, data: Path, out: Path) -> Path:
    from medvlm.data.processor import ImageCache
    from medvlm.train import TrainConfig, train

    model_dir = None
    configs = [_train_config(TrainConfig, recipe) for recipe in tiny_stage_recipes(cfg, data, out).values()]
    # one cache for the three stages: the align stage's feature cache reads the images the encoder stage decoded
    images = ImageCache(max(c.data.image_cache_mb for c in configs) * 2**20)
    for train_cfg in configs:
        model_dir = train(train_cfg, image_cache=images).model_dir
    return model_dir


def _has_finding_tokens(cfg: DemoConfig) -> bool:
    return cfg.preset_options.get("connector_type") in ("findings", "pair_findings")


def _train_pretrained(cfg: DemoConfig, data: Path, run_dir: Path) -> Path:
    """configs/pretrained_cxr.yaml's recipe on the demo data, for `pretrained_steps` steps."""
    from medvlm.train import TrainConfig, train

    train_cfg = _train_config(TrainConfig, {
        "recipe": "finetune",
        "model": {"preset": "pretrained", "preset_options": {"image_size": cfg.pretrained_image_size}},
        "data": {"train": str(data / "train.json"), "image_folder": str(data), "max_length": 320},
        "components": {"vision": "frozen", "connector": "full", "language": "lora"},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        "optim": {"lr": cfg.pretrained_lr, "batch_size": cfg.pretrained_batch_size,
                  "max_steps": cfg.pretrained_steps, "warmup_ratio": 0.05},
        "run": {"seed": cfg.seed, "progress": cfg.progress, "log_every_steps": 5,
                "output_dir": str(run_dir / "finetune"), "cache_vision_features": True},
    })
    return train(train_cfg).model_dir


def _test_questions(cfg: DemoConfig, data: Path, run_dir: Path) -> list:
    """The tiny demo answers every test question; the pretrained one the first N of each answer type (written to
    RUN/questions.jsonl so the subset can be rerun)."""
    from medvlm.records import load_questions, write_questions

    questions = list(load_questions(data / "test.jsonl"))
    if cfg.preset == "tiny":
        return questions
    taken: Counter = Counter()
    subset = []
    for q in questions:
        if taken[q.answer_type] < cfg.pretrained_questions_per_type:
            taken[q.answer_type] += 1
            subset.append(q)
    write_questions(run_dir / "questions.jsonl", subset)
    return subset


def _answer(model, processor, questions: list, image_folder: Path, out_file: Path, model_id: str,
            cfg: DemoConfig) -> None:
    from medvlm.infer.options import GenerationOptions
    from medvlm.infer.predict import predict

    batch_size = 32 if cfg.preset == "tiny" else 16
    predict(model, processor, questions, out_file, image_folder=image_folder, batch_size=batch_size,
            model_id=model_id, options=GenerationOptions(max_new_tokens=cfg.max_new_tokens), progress=cfg.progress)


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
    return (info.get("n") == cfg.studies and info.get("seed") == cfg.seed and info["config"]["size_px"] == cfg.size_px
            and info.get("test_fraction") == cfg.test_fraction)


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


def _most_frequent_answers(train_file: Path, questions: list, out: Path) -> None:
    """Control: every question gets the most frequent training answer to the same question text (reports: the
    most frequent training report), ignoring the image."""
    from medvlm.records import AnswerRecord, load_training, write_answers

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
    for q in questions:
        if q.answer_type == "report":
            text = top_report
        else:
            counts = per_question.get(q.text.replace("<image>", "").strip())
            text = counts.most_common(1)[0][0] if counts else ""
        answers.append(AnswerRecord(question_id=q.question_id, prompt=q.text, text=text, reference=q.reference,
                                    answer_type=q.answer_type, answer_id=f"most-frequent-{q.question_id}",
                                    model_id="most-frequent", metadata=dict(q.metadata)))
    write_answers(out, answers)


def _score(answers_file: Path, cfg: DemoConfig, ids: set) -> dict:
    """Scores of the answers to the questions in `ids`; every one of them must have been answered."""
    from medvlm.evaluate.answers import score_by_answer_type
    from medvlm.records import load_answers

    answers = [a for a in load_answers(answers_file) if a.question_id in ids]
    missing = ids - {a.question_id for a in answers}
    if missing:
        raise ValueError(f"{answers_file}: no answer to {len(missing)} demo question(s), e.g. {sorted(missing)[:3]}; "
                         "rerun the demo (it answers only what is missing)")
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


def _loss_curves_png(stage_dirs: dict[str, Path]) -> str | None:
    """Training loss of each stage, one after the other on the step axis; None when no stage has a log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medvlm.evaluate.html import _png_data_uri
    from medvlm.train.logger import read_log

    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    offset = 0
    for stage, folder in stage_dirs.items():
        rows = [r for r in read_log(folder) if r["kind"] == "train"] if folder.is_dir() else []
        if rows:
            ax.plot([offset + r["step"] for r in rows], [r["loss"] for r in rows], label=stage)
            offset += rows[-1]["step"]
    if not offset:
        plt.close(fig)
        return None
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (per token; encoder: per label)")
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


# preset -> (section title, folder under OUT holding metrics.json and answers, training stage folders under OUT)
_REPORT_SECTIONS = {
    "tiny": ("Tiny preset (from scratch: conv-stem ViT + mlp2x_gelu + Llama; encoder, align, finetune)", ".",
             {"encoder": "encoder", "align": "align", "finetune": "finetune"}),
    "pretrained": ("Pretrained preset (EfficientNet-Lite0 frozen + mlp2x_gelu + SmolLM2-135M with LoRA)",
                   "pretrained", {"finetune": "pretrained/finetune"}),
}


def _metrics_table(metrics: dict) -> str:
    columns = list(metrics)
    keys = [k for k in SUMMARY_KEYS if any(k in metrics[c] for c in columns)]
    head = "<tr><th>metric</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
    rows = []
    for k in keys:
        cells = "".join(
            f"<td>{metrics[c][k]:.4f}</td>" if isinstance(metrics[c].get(k), float) else "<td></td>" for c in columns
        )
        rows.append(f"<tr><td>{k}</td>{cells}</tr>")
    return f'<table class="metrics">{head}{"".join(rows)}</table>'


def _report_section(preset: str, out: Path, data: Path, n_examples: int) -> list[str]:
    from medvlm.evaluate.html import _bar_chart, _per_observation_f1
    from medvlm.records import load_answers, load_questions

    title, folder, stages = _REPORT_SECTIONS[preset]
    run_dir = out / folder
    record = json.loads((run_dir / "metrics.json").read_text())
    metrics, seconds = record["metrics"], record["seconds"]
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + f" (total {sum(seconds.values()):.0f} s)"
    body = [f"<h2>{html.escape(title)}</h2>",
            f'<div class="meta">{record.get("questions", "")} test questions; time: {html.escape(timing)}</div>',
            _metrics_table(metrics)]
    curves = _loss_curves_png({stage: out / path for stage, path in stages.items()})
    if curves:
        body += ["<h3>Training loss</h3>", f'<div class="charts"><img alt="loss curves" src="{curves}"></div>']
    per_obs = _per_observation_f1(metrics["model"])
    if per_obs:
        chart = _bar_chart(f"Clinical F1 per observation in the test references ({preset})", per_obs)
        body += ["<h3>Clinical F1 per observation</h3>", f'<div class="charts"><img alt="per observation" src="{chart}"></div>']

    answers = [a for a in load_answers(run_dir / "answers.jsonl") if a.answer_type == "report"][:n_examples]
    blank = {a.question_id: a.text for a in load_answers(run_dir / "controls" / "blank_images.jsonl")}
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
    body += ["<h3>Test studies: generated and reference reports</h3>", "".join(cards)]
    return body


def write_demo_report(path: Path, out: Path, n_examples: int = 8) -> None:
    """OUT/report.html: a section per preset whose demo has run in `out` (its metrics.json exists)."""
    from medvlm.evaluate.html import _CSS

    out = Path(out)
    body = [
        "<h1>medvlm demo on the synthetic chest X-ray benchmark</h1>",
        '<div class="meta">Columns: <b>model</b> = the trained model; <b>blank_images</b> = the same model given '
        "black images (shows whether it reads the image); <b>most_frequent</b> = the most frequent training answer "
        "(report) for every question; <b>tiny</b> (pretrained section) = the tiny model's answers to the same "
        "questions. Clinical F1 from the offline CheXpert labeler; BERTScore uses all-MiniLM-L6-v2 (not comparable "
        "with roberta-large numbers in papers).</div>",
    ]
    for preset, (_, folder, _) in _REPORT_SECTIONS.items():
        if (out / folder / "metrics.json").is_file():
            body += _report_section(preset, out, out / "data", n_examples)
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>medvlm demo</title>'
            f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")
    atomic_write_text(path, page)
