"""The training recipe: `train(cfg)` reads top to bottom as the loop it runs.

Stages (LLaVA-Rad, Libra, MedM-VL all use the same two):
  align     connector only; vision encoder and LM frozen (LLaVA stage 1). Frozen-encoder features can be
            computed once and cached (`run.cache_vision_features`).
  finetune  each component frozen, LoRA (PEFT) or fully trained (`components.*`), usually starting from the
            align stage's output (`model.init_from`).
And before them, optionally:
  encoder   the vision encoder alone learns the 14 CheXpert labels the offline labeler reads from each training
            report (medvlm.train.encoder_stage); the same loop, with a per-label loss instead of per-token.

Data parallel: run the same command under `torchrun --nproc_per_node N -m medvlm.cli train ...` (or
`accelerate launch` on GPUs). Each optimizer step sees `optim.batch_size x processes x optim.grad_accum`
samples; the loss is the mean over every assistant token of that global batch, so N processes give the
same update as one process with an N-times larger batch.

Resume: rerunning the same command continues from `run.output_dir/checkpoints/latest` exactly
(weights, optimizer, scheduler, RNG and the position in the data order).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from tqdm.auto import tqdm

from medvlm.config import dump_config
from medvlm.data.processor import ImageCache
from medvlm.train import components as components_lib
from medvlm.train import encoder_stage, finding_targets
from medvlm.train.builders import build_model_and_processor, build_training_data
from medvlm.train.checkpoint import (
    TrainState,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from medvlm.train.config import TrainConfig
from medvlm.train.logger import RunLogger
from medvlm.train.schedule import build_scheduler


@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path  # the exported model (best by the validation metric when validation ran, else last)
    steps: int
    train_loss: float  # mean loss of the last logged window
    seconds: float
    resumed_from: int | None = None  # step the run resumed at, if it did
    validations: list[dict] = field(default_factory=list)
    best_metric: float | None = None
    best_step: int | None = None


GROUP_BATCHES = 16  # data.group_by_length: global batches sorted together by length


class GlobalBatchSampler:
    """Yields this process's share of each global micro-batch, in a seeded per-epoch order.

    The order of epoch e is a permutation seeded by (seed, e); a global micro-batch is `global_batch`
    consecutive indices of it and rank r takes slice r. Starting at (epoch, batch) makes resume exact.
    With several processes the last partial global batch of an epoch is dropped (every rank must step).
    `lengths` (tokens per sample) groups samples of similar length into the same batch (data.group_by_length);
    `tasks` (one label per sample, e.g. "report" / "vqa") keeps each batch's mix of tasks as in the data while
    doing so: a batch gets the short reports with the short questions, not all reports.
    `weights` (one per sample, >= 0; data.task_weights) sets how often a sample comes per epoch: floor(w) times,
    plus once more for a seeded random share frac(w) of the samples of that weight, drawn anew each epoch; an
    epoch then holds `epoch_size` draws.
    """

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int, seed: int,
                 lengths: list[int] | None = None, tasks: list | None = None, weights: list[float] | None = None):
        self.n, self.batch_size, self.world_size, self.rank, self.seed = n, batch_size, world_size, rank, seed
        for name, values in (("lengths", lengths), ("tasks", tasks), ("weights", weights)):
            if values is not None and len(values) != n:
                raise ValueError(f"{name} has {len(values)} entries for {n} samples")
        self.lengths = lengths
        self.tasks = tasks
        self.by_weight: dict[float, list[int]] = {}  # weight -> its samples (empty: every sample once)
        if weights is not None:
            for i, w in enumerate(weights):
                if not w >= 0:
                    raise ValueError(f"sample {i} has weight {w}: give weights >= 0")
                self.by_weight.setdefault(float(w), []).append(i)
        self.epoch_size = (sum(int(w) * len(m) + round((w % 1) * len(m)) for w, m in self.by_weight.items())
                           if weights is not None else n)
        self.global_batch = batch_size * world_size
        full, rest = divmod(self.epoch_size, self.global_batch)
        self.batches_per_epoch = full + (1 if rest and world_size == 1 else 0)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{self.epoch_size} training samples per epoch cannot fill one global batch of {self.global_batch} "
                f"({batch_size} per process x {world_size} processes); lower optim.batch_size"
            )
        self.start_epoch = 0
        self.start_batch = 0

    def pool(self, g: torch.Generator) -> list[int]:
        """The samples an epoch draws from, each as often as its weight says (in no particular order)."""
        if not self.by_weight:
            return list(range(self.n))
        pool = []
        for w, members in sorted(self.by_weight.items()):
            pool += members * int(w)
            extra = round((w % 1) * len(members))
            if extra:
                pool += [members[i] for i in torch.randperm(len(members), generator=g)[:extra].tolist()]
        return pool

    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        pool = self.pool(g)
        order = [pool[i] for i in torch.randperm(len(pool), generator=g).tolist()]
        if self.lengths is None:
            return order
        # group by length (as transformers' group_by_length / LLaVA's grouped sampler): sort each run of
        # GROUP_BATCHES global batches by length, cut it into global batches, then shuffle the full batches, so
        # a batch pads to similar lengths and the order stays random; the partial batch, if any, stays last
        mega = self.global_batch * GROUP_BATCHES
        grouped = []
        for start in range(0, len(order), mega):
            grouped += self._by_length(order[start : start + mega])
        full = len(order) // self.global_batch
        batches = [grouped[b * self.global_batch : (b + 1) * self.global_batch] for b in range(full)]
        shuffled = [batches[i] for i in torch.randperm(full, generator=g).tolist()]
        return [i for batch in shuffled for i in batch] + grouped[full * self.global_batch :]

    def _by_length(self, run: list[int]) -> list[int]:
        """`run` longest first. With tasks: each task's samples longest first, interleaved by their rank within
        the task (sample r of a task's n at (r + 0.5) / n), so every stretch of the result mixes the tasks as the
        run does. One task (or none): the plain sort."""
        if self.tasks is None:
            return sorted(run, key=lambda i: -self.lengths[i])
        by_task: dict = {}
        for i in run:
            by_task.setdefault(self.tasks[i], []).append(i)
        keyed = []
        for members in by_task.values():
            members.sort(key=lambda i: -self.lengths[i])
            keyed += [((rank + 0.5) / len(members), i) for rank, i in enumerate(members)]
        return [i for _, i in sorted(keyed, key=lambda pair: pair[0])]

    def __iter__(self) -> Iterator[list[int]]:
        epoch, batch = self.start_epoch, self.start_batch
        while True:
            order = self.order(epoch)
            for b in range(batch, self.batches_per_epoch):
                chunk = order[b * self.global_batch : (b + 1) * self.global_batch]
                yield chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            epoch, batch = epoch + 1, 0


def task_sample_weights(cfg: TrainConfig, dataset) -> list[float]:
    """data.task_weights -> one weight per sample, from its record's `task` (tasks not named weigh 1)."""
    if cfg.recipe == "encoder":
        raise ValueError("data.task_weights mixes the record tasks of recipes align / finetune; recipe 'encoder' "
                         "learns from every report image once per epoch: leave it empty")
    tasks = dataset.tasks()
    found = sorted({str(t) for t in tasks})
    for task, weight in cfg.data.task_weights.items():
        if task not in found:
            raise ValueError(f"data.task_weights names task {task!r}, which no record of {cfg.data.train} has "
                             f"(their tasks: {found})")
        if not (isinstance(weight, int | float) and weight >= 0):
            raise ValueError(f"data.task_weights.{task}={weight!r}: give a number >= 0")
    weights = [float(cfg.data.task_weights.get(str(t), 1.0)) for t in tasks]
    if not any(weights):
        raise ValueError("data.task_weights leaves no record to train on: give some task a weight > 0")
    return weights


def sample_loss_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: sum of next-token cross-entropy over labelled positions (B,), and their count (B,).
    logits (B, T, V), labels (B, T) with -100 where nothing is learned."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    per_token = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), ignore_index=-100, reduction="none"
    ).view(shift_labels.shape)
    return per_token.sum(dim=1), (shift_labels != -100).sum(dim=1)


def labelled_loss_sums(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """`sample_loss_sums` of the model on `batch`, with logits only where a label follows: the language model's
    head and the cross-entropy run on the learned positions (a fifth of the demo's tokens) instead of all of
    them, through transformers' `logits_to_keep` boolean mask (every causal LM built on `slice_logits_to_keep`:
    Llama, Qwen2, Mistral, Gemma, Phi3, GPT-2 ...). Same numbers as the full logits (tests/train)."""
    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    inputs = _model_inputs(batch)
    if right_padded(inputs.get("attention_mask")):
        # causal attention alone keeps every real token from seeing the padding after it, so the mask adds
        # nothing: without it SDPA runs causal (skipping the upper triangle) instead of applying a (B, 1, T, T)
        # mask. Pad positions then see each other, but nothing is learned there (tests/models)
        inputs["attention_mask"] = None
    logits = model(**inputs, logits_to_keep=keep).logits  # (learned positions, vocab)
    if logits.ndim != 2 or logits.shape[0] != int(keep.sum()):
        raise ValueError(f"the language model gave logits {tuple(logits.shape)} for a logits_to_keep mask of "
                         f"{int(keep.sum())} positions; it does not take a boolean logits_to_keep (transformers' "
                         "slice_logits_to_keep)")
    per_token = torch.nn.functional.cross_entropy(logits.float(), labels[:, 1:][keep[:, :-1]], reduction="none")
    rows = keep.nonzero()[:, 0]  # row-major, as boolean indexing orders them
    sums = torch.zeros(labels.shape[0], dtype=per_token.dtype, device=per_token.device).index_add_(0, rows, per_token)
    return sums, keep.sum(dim=1)


def weighted_loss(sums: torch.Tensor, counts: torch.Tensor, weighting: str, *, world: int, step_tokens: int,
                  step_samples: int, mean_labelled: float | None = None) -> torch.Tensor:
    """This micro-batch's share of the step loss (optim.loss_weighting). sums / counts: per-sample loss sums and
    learned-token counts (B,); step_tokens / step_samples: over the whole global step (all processes, all
    micro-batches), so N processes make the update of one process with an N times larger batch."""
    if weighting == "sample":  # every sample counts alike, short answers included
        return (sums / counts.clamp(min=1)).sum() * world / max(step_samples, 1)
    if weighting == "token_global":  # every token alike over the epoch, whatever a batch holds
        if mean_labelled is None:
            raise ValueError("loss_weighting='token_global' needs the data's mean learned tokens per sample")
        return sums.sum() * world / (mean_labelled * max(step_samples, 1))
    return sums.sum() * world / max(step_tokens, 1)  # every learned token of the step counts alike


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropy over labelled positions, and their count. logits (B,T,V), labels (B,T)."""
    sums, counts = sample_loss_sums(logits, labels)
    return sums.sum(), int(counts.sum())


def right_padded(attention_mask: torch.Tensor | None) -> bool:
    """True when every row of `attention_mask` (B, T) is ones then zeros (padding on the right only)."""
    if attention_mask is None or attention_mask.ndim != 2:
        return False
    return bool(attention_mask[:, 0].all() and (attention_mask[:, 1:] <= attention_mask[:, :-1]).all())


def _model_inputs(batch: dict) -> dict:
    return {**{k: v for k, v in batch.items() if k != "labels" and v is not None}, "use_cache": False}


@dataclass
class Objective:
    """What a recipe's loss counts: `counts(batch)` the labelled units per sample (B,) (assistant tokens, or
    labels), `loss_sums(model, batch)` their summed loss and count per sample ((B,), (B,))."""

    counts: Callable[[dict], torch.Tensor]
    loss_sums: Callable[[torch.nn.Module, dict], tuple[torch.Tensor, torch.Tensor]]


NEXT_TOKEN = Objective(  # finetune / align: assistant tokens
    counts=lambda batch: (batch["labels"][:, 1:] != -100).sum(dim=1),
    loss_sums=labelled_loss_sums,
)
PER_LABEL = Objective(counts=encoder_stage.label_counts, loss_sums=encoder_stage.label_loss_sums)  # encoder


def train(cfg: TrainConfig, image_cache: ImageCache | None = None) -> TrainResult:
    """Run the recipe `cfg` (medvlm.train.config) to its end, resuming from the last checkpoint of its output
    directory. `image_cache`: keep decoded training images there instead of in a fresh ImageCache of
    data.image_cache_mb, e.g. one cache for stages run one after another in a process (`medvlm demo`), so that
    each image is decoded once."""
    started = time.perf_counter()
    # without a GPU, Accelerate joins torchrun's processes (gloo) only when told it runs on the CPU
    on_cpu = not (torch.cuda.is_available() or torch.backends.mps.is_available())
    # encoders keep parameters the selected features never use (e.g. ViT's final norm when an earlier layer
    # feeds the connector): DDP must be told, or it waits for their gradients forever
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    accelerator = Accelerator(mixed_precision=cfg.run.mixed_precision, cpu=on_cpu, kwargs_handlers=[ddp])
    rank, world = accelerator.process_index, accelerator.num_processes
    run_dir = Path(cfg.run.output_dir)
    is_main = accelerator.is_main_process
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
    seed_everything(cfg.run.seed)

    components_lib.check_recipe(cfg)
    with accelerator.main_process_first():  # the main process builds (and saves) a preset's tokenizer first
        model, processor, records = build_model_and_processor(cfg, image_cache)
    cache = processor.image_cache  # this process's (DataLoader workers keep their own); this run's counts logged
    cache_counts = (cache.hits, cache.misses) if cache is not None else (0, 0)
    composed = model
    if cfg.recipe == "encoder":  # the encoder with a label head is what trains; the composed model is saved
        model, data = encoder_stage.build(cfg, composed, processor, records)
        objective = PER_LABEL
    else:
        model = components_lib.apply(model, cfg)  # freeze / LoRA / full per component
        if cfg.run.gradient_checkpointing:
            components_lib.enable_gradient_checkpointing(model)
        data = build_training_data(cfg, model, processor, records, run_dir, accelerator)
        objective = NEXT_TOKEN

    trainable = [p for p in model.parameters() if p.requires_grad]
    # the fused kernel (CPU and CUDA): one pass over all parameters instead of a dozen ops per tensor list; 4.8x
    # faster for the tiny preset's language model on 2 cores (benchmarks/step_parts_speed.py)
    optimizer = torch.optim.AdamW(
        trainable, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, betas=tuple(cfg.optim.betas),
        fused=all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in trainable),
    )
    # the encoder recipe's samples are images, all one size: nothing to group
    grouped = cfg.data.group_by_length and cfg.recipe != "encoder"
    lengths = data.dataset.lengths() if grouped else None
    tasks = data.dataset.tasks() if grouped and cfg.data.group_mix_tasks else None
    weights = task_sample_weights(cfg, data.dataset) if cfg.data.task_weights else None
    sampler = GlobalBatchSampler(len(data.dataset), cfg.optim.batch_size, world, rank, cfg.run.seed, lengths, tasks,
                                 weights)
    mean_labelled = None  # optim.loss_weighting="token_global": the data's learned tokens per sample
    if cfg.optim.loss_weighting == "token_global":
        if not hasattr(data.dataset, "labelled_tokens"):
            raise ValueError(f"optim.loss_weighting='token_global' counts learned text tokens, which recipe "
                             f"{cfg.recipe!r} has none of; use 'token' or 'sample'")
        counts = data.dataset.labelled_tokens()
        mean_labelled = max(sum(counts) / max(len(counts), 1), 1e-6)
    steps_per_epoch = math.ceil(sampler.batches_per_epoch / cfg.optim.grad_accum)
    total_steps = cfg.optim.max_steps or max(1, math.ceil(cfg.optim.epochs * steps_per_epoch))
    warmup = int(cfg.optim.warmup_ratio * total_steps)
    scheduler = build_scheduler(optimizer, total_steps, warmup, cfg.optim.schedule)

    state = TrainState()
    resumed_from = None
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler, rank=rank)
        resumed_from = state.step
    model, optimizer = accelerator.prepare(model, optimizer)
    sampler.start_epoch, sampler.start_batch = state.epoch, state.batch_in_epoch
    loader = torch.utils.data.DataLoader(
        data.dataset,
        batch_sampler=sampler,
        collate_fn=data.collate,
        num_workers=cfg.data.num_workers,
    )
    batches = iter(loader)

    logger = RunLogger(run_dir, enabled=is_main, tensorboard=cfg.run.tensorboard)
    if is_main:
        logger.log(
            "start", state.step, total_steps=total_steps, processes=world, samples=len(data.dataset),
            trainable_params=sum(p.numel() for p in trainable), resumed=resumed_from is not None,
        )
    bar = tqdm(total=total_steps, initial=state.step, disable=not (is_main and cfg.run.progress), desc=cfg.recipe,
               unit="step", dynamic_ncols=True)
    window_loss, window_tokens = 0.0, 0
    recent_loss = float("nan")
    model.train()
    stop = False
    while state.step < total_steps and not stop:
        micro = []
        for _ in range(cfg.optim.grad_accum):
            micro.append(next(batches))
            state.batch_in_epoch += 1
            if state.batch_in_epoch >= sampler.batches_per_epoch:
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        # normalise by the label tokens (or samples) of the whole global step, so that N processes give the
        # same update as one process with an N times larger batch
        local_tokens = sum(int(objective.counts(b).sum()) for b in micro)
        step_tokens = int(accelerator.reduce(torch.tensor(local_tokens, device=accelerator.device), "sum"))
        local_samples = sum(int(b["labels"].shape[0]) for b in micro)
        step_samples = int(accelerator.reduce(torch.tensor(local_samples, device=accelerator.device), "sum"))
        step_loss = torch.zeros((), device=accelerator.device)
        for i, batch in enumerate(micro):
            if "finding_targets" in batch:  # findings.teacher_forcing: which images get their report's labels
                batch["finding_targets"] = finding_targets.force(batch["finding_targets"],
                                                                 cfg.findings.teacher_forcing)
            batch = {k: (v.to(accelerator.device) if torch.is_tensor(v) else v) for k, v in batch.items()}
            sync = i == len(micro) - 1
            context = accelerator.no_sync(model) if (not sync and world > 1) else _nullcontext()
            with context, accelerator.autocast():
                sums, counts = objective.loss_sums(model, batch)
                loss_sum = sums.sum()
                loss = weighted_loss(sums, counts, cfg.optim.loss_weighting, world=world, step_tokens=step_tokens,
                                     step_samples=step_samples, mean_labelled=mean_labelled)
                accelerator.backward(loss)
            step_loss += loss_sum.detach()
        if cfg.optim.max_grad_norm > 0:
            accelerator.clip_grad_norm_(trainable, cfg.optim.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        window_loss += float(accelerator.reduce(step_loss, "sum"))
        window_tokens += step_tokens
        bar.update(1)

        if state.step % cfg.run.log_every_steps == 0 or state.step == total_steps:
            recent_loss = window_loss / max(window_tokens, 1)
            bar.set_postfix(loss=f"{recent_loss:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            logger.log("train", state.step, loss=recent_loss, lr=scheduler.get_last_lr()[0], epoch=state.epoch)
            window_loss, window_tokens = 0.0, 0

        last = state.step == total_steps
        validate_now = data.validation is not None and (
            last or (cfg.validation.every_steps and state.step % cfg.validation.every_steps == 0)
        )
        if validate_now:
            results = data.validation.run(accelerator.unwrap_model(model), state.step)
            model.train()
            stop = _record_validation(cfg, state, results, logger)
            bar.write(_format_validation(state.step, results))
        if last or stop or (cfg.run.save_every_steps and state.step % cfg.run.save_every_steps == 0) or validate_now:
            save_checkpoint(run_dir, model=accelerator.unwrap_model(model), optimizer=optimizer, scheduler=scheduler,
                            state=state, rank=rank, keep_last=cfg.run.keep_last, barrier=accelerator.wait_for_everyone)
    bar.close()

    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    model_dir = run_dir / "model"
    if is_main and cfg.recipe == "encoder":
        encoder_stage.export(composed, model, processor, model_dir)
    elif is_main:
        components_lib.export(model, processor, cfg, run_dir, model_dir, state)
    accelerator.wait_for_everyone()
    seconds = time.perf_counter() - started
    if is_main:
        cache_stats = ({"image_cache": {"hits": cache.hits - cache_counts[0], "misses": cache.misses - cache_counts[1],
                                        "mb": round(cache.bytes / 2**20, 1)}} if cache is not None else {})
        logger.log("end", state.step, seconds=round(seconds, 2), loss=recent_loss, **cache_stats)
    logger.close()
    return TrainResult(
        run_dir=run_dir, model_dir=model_dir, steps=state.step, train_loss=recent_loss, seconds=seconds,
        resumed_from=resumed_from, validations=state.history, best_metric=state.best_metric, best_step=state.best_step,
    )


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _record_validation(cfg: TrainConfig, state: TrainState, results: dict, logger: RunLogger) -> bool:
    """Update best / early-stopping state from one validation; return True when training should stop."""
    key = cfg.validation.metric
    if key not in results:
        raise KeyError(f"validation.metric {key!r} is not among the validation results {sorted(results)}")
    greater = cfg.validation.greater_is_better
    if greater is None:
        greater = key != "loss"
    value = float(results[key])
    state.history.append({"step": state.step, **results})
    logger.log("validation", state.step, **{k: v for k, v in results.items() if isinstance(v, int | float)})
    improved = state.best_metric is None or (value > state.best_metric if greater else value < state.best_metric)
    if improved:
        state.best_metric, state.best_step, state.bad_validations = value, state.step, 0
        return False
    state.bad_validations += 1
    patience = cfg.validation.early_stopping_patience
    return bool(patience) and state.bad_validations >= patience


def _format_validation(step: int, results: dict) -> str:
    shown = ", ".join(f"{k}={v:.4f}" for k, v in results.items() if isinstance(v, float))
    return f"validation @ step {step}: {shown}"
