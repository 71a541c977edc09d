"""The training recipe config: one YAML file per run, every field documented here.

Sections: `model` (what to build or start from), `data`, `components` (frozen / lora / full per part),
`lora`, `optim`, `validation`, `encoder` (recipe=encoder only), `findings` (findings connectors), `run`. Override any field on the command line: `optim.lr=3e-4`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["frozen", "lora", "full"]


@dataclass
class ModelConfig:
    """What to train. Exactly one of: init_from (a saved medvlm model), compose (parts), preset."""

    init_from: str | None = None  # a saved medvlm model folder, e.g. the align stage's RUN/model
    # parts: {vision: DIR or {model_type: vit, ...}, text: DIR or {model_type: llama, ...}, connector_type, ...}
    # (the fields of medvlm.models.presets.ComposeConfig)
    compose: dict[str, Any] | None = None
    preset: str | None = "tiny"  # a preset of medvlm.models.presets.PRESETS
    preset_options: dict[str, Any] = field(default_factory=dict)  # e.g. {image_size: 64, text_layers: 4}


@dataclass
class DataConfig:
    train: str = ""  # training records: LLaVA conversation JSON / JSONL
    image_folder: str | None = None  # image paths in records resolve here (default: the records file's folder)
    validation: str | None = None  # questions JSONL with `reference` (and `answer_type`) for generation-based validation
    max_length: int = 512  # tokens per sample, image tokens included
    # batches of samples of similar length (less padding; much faster when short and long records mix, e.g.
    # reports and multi-turn VQA); the order stays seeded and resumable
    group_by_length: bool = False
    # with group_by_length: keep each batch's mix of record tasks (metadata `task`) as in the data, sorting each
    # task's samples by length on its own (docs/training.md has the measurements: better VQA, not better reports)
    group_mix_tasks: bool = False
    # how often each record `task` (metadata) comes per epoch, e.g. {report: 2}: a weight w draws each record
    # floor(w) times plus a fresh seeded share frac(w) of them once more; tasks not named weigh 1, 0 leaves a task
    # out (docs/training.md, "Task weights")
    task_weights: dict[str, float] = field(default_factory=dict)
    skip_bad: bool = False  # skip (and list) bad records instead of failing on the first
    num_workers: int = 0  # DataLoader worker processes
    # preprocessed training images kept in memory (MiB, per process) so that later epochs skip decoding and
    # resizing (a gray 128 px image takes 64 KiB); 0: decode every time
    image_cache_mb: int = 512


@dataclass
class ComponentsConfig:
    vision: Mode = "frozen"
    connector: Mode = "full"
    language: Mode = "frozen"


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # module names inside each LoRA'd component; the defaults cover Llama/Qwen2/Mistral/Gemma/Phi3/GPT-2/ViT/CLIP/SigLIP
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "c_attn", "query", "key", "value"]
    )


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = 0.03  # fraction of optimizer steps spent warming up linearly from 0
    max_grad_norm: float = 1.0  # 0 disables clipping
    batch_size: int = 8  # per process
    grad_accum: int = 1  # micro-batches per optimizer step
    epochs: float = 1.0
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    # "token": the loss is the mean over every assistant token of the step (long reports weigh most);
    # "sample": the mean over samples of each sample's token mean (a one-word VQA answer weighs as a report);
    # "token_global": the step's token loss sum over (the data's mean learned tokens per sample x the step's
    # samples): every token weighs the same across the epoch, also when data.group_by_length makes some batches
    # all short records (with "token" each of their tokens would weigh more than a long record's)
    loss_weighting: Literal["token", "sample", "token_global"] = "token"


@dataclass
class ValidationConfig:
    every_steps: int = 0  # 0: only at the end of training
    max_samples: int = 64  # questions generated per validation (the first N of the file: same every time)
    max_new_tokens: int = 96
    batch_size: int = 16
    metric: str = "loss"  # checkpoint selection: "loss" (teacher-forced) or a generation metric key, e.g. clinical_micro_f1_14
    greater_is_better: bool | None = None  # default: False for loss, True otherwise
    early_stopping_patience: int = 0  # validations without improvement before stopping; 0 disables


@dataclass
class EncoderConfig:
    """recipe=encoder (medvlm.train.encoder_stage): the vision encoder learns the CheXpert labels of the reports."""

    report_task: str | None = "report"  # records whose `task` is this give the labels; null: every record
    uncertain: Literal["ignore", "positive", "negative"] = "ignore"  # what an uncertain mention counts as
    # what the label head reads: the token mean, [mean, max], or the CLS token (vision_feature_select keep_cls)
    pooling: Literal["mean", "mean_max", "cls"] = "mean"
    # weight of a positive target in the loss, per label, from the training images: "none" (1), "balanced"
    # (negatives / positives) or "sqrt" (its square root; rare findings are found more often at p > 0.5); at most 20
    positive_weight: Literal["none", "sqrt", "balanced"] = "none"
    # also learn, from [current, prior] of the records with a prior, the change each report states per finding
    # (medvlm.evaluate.change: none / new / resolved / increased / decreased / unchanged); one sample per record
    change_head: bool = False


@dataclass
class FindingsConfig:
    """Findings connectors (findings, pair_findings) in recipes align / finetune (medvlm.train.finding_targets)."""

    # probability, per image and step, that its finding tokens carry the labels of its own report (the offline
    # CheXpert labeler's) instead of the classifier's decisions; 0: always the classifier's. 1 teaches the language
    # model to write what the tokens say (docs/training.md, "Teacher forcing the finding tokens")
    teacher_forcing: float = 0.0
    report_task: str | None = "report"  # records whose `task` is this give the labels; null: every record
    uncertain: Literal["ignore", "positive", "negative"] = "ignore"  # an uncertain mention; ignore: the classifier's


@dataclass
class RunConfig:
    output_dir: str = "runs/medvlm"
    seed: int = 0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # fp32 is fastest on CPUs
    gradient_checkpointing: bool = False
    log_every_steps: int = 10
    save_every_steps: int = 0  # 0: only at the end
    keep_last: int = 2  # step checkpoints kept (the best one is kept besides)
    cache_vision_features: bool = False  # frozen encoder: compute its features once, reuse every epoch
    # where the cache lives (None: OUTPUT_DIR/feature_cache); stages that share an encoder can share one folder:
    # the cache is rebuilt whenever the encoder's weights, its feature selection, the preprocessing or the
    # image list differ
    feature_cache_dir: str | None = None
    tensorboard: bool = True
    progress: bool = True


@dataclass
class TrainConfig:
    # align: connector only; finetune: per component; encoder: the vision encoder alone on report labels
    recipe: Literal["align", "finetune", "encoder"] = "finetune"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    components: ComponentsConfig = field(default_factory=ComponentsConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    findings: FindingsConfig = field(default_factory=FindingsConfig)
    run: RunConfig = field(default_factory=RunConfig)
