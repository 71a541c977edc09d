import pytest
import torch

from medvlm.train.recipe import GlobalBatchSampler, right_padded, token_loss_sum, weighted_loss
from medvlm.train.schedule import lr_multiplier


def _take(sampler, k):
    it = iter(sampler)
    return [next(it) for _ in range(k)]


def test_two_processes_split_each_global_batch_of_one_process():
    one = _take(GlobalBatchSampler(10, batch_size=4, world_size=1, rank=0, seed=3), 4)
    r0 = _take(GlobalBatchSampler(10, batch_size=2, world_size=2, rank=0, seed=3), 4)
    r1 = _take(GlobalBatchSampler(10, batch_size=2, world_size=2, rank=1, seed=3), 4)
    # one process keeps the partial last batch (10 = 4 + 4 + 2); two processes drop it (every rank must step)
    assert [len(b) for b in one[:3]] == [4, 4, 2]
    assert one[0] == r0[0] + r1[0] and one[1] == r0[1] + r1[1]
    assert sorted(one[0] + one[1] + one[2]) == list(range(10))


def test_sampler_restarts_mid_epoch_where_it_stopped():
    full = _take(GlobalBatchSampler(9, batch_size=2, world_size=1, rank=0, seed=0), 12)
    resumed = GlobalBatchSampler(9, batch_size=2, world_size=1, rank=0, seed=0)
    resumed.start_epoch, resumed.start_batch = 1, 2  # 5 batches per epoch: batch 7 overall
    assert _take(resumed, 5) == full[7:12]


def test_group_by_length_batches_similar_lengths_and_still_covers_and_resumes():
    import random

    rng = random.Random(0)
    lengths = [rng.choice([90, 100, 110]) if i % 2 else rng.choice([150, 300, 400]) for i in range(101)]
    plain = GlobalBatchSampler(101, batch_size=4, world_size=1, rank=0, seed=1)
    grouped = GlobalBatchSampler(101, batch_size=4, world_size=1, rank=0, seed=1, lengths=lengths)
    epoch = _take(grouped, grouped.batches_per_epoch)
    assert sorted(i for batch in epoch for i in batch) == list(range(101))  # each sample once per epoch
    assert [len(b) for b in epoch][-1] == 1  # the partial batch stays last

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    assert padding(epoch) < padding(_take(plain, plain.batches_per_epoch)) / 3
    assert epoch != sorted(epoch, key=lambda b: -max(lengths[i] for i in b))  # batch order still shuffled
    two_epochs = _take(GlobalBatchSampler(101, 4, 1, 0, 1, lengths), 2 * grouped.batches_per_epoch)
    resumed = GlobalBatchSampler(101, 4, 1, 0, 1, lengths)
    resumed.start_epoch, resumed.start_batch = 1, 5
    assert _take(resumed, 3) == two_epochs[grouped.batches_per_epoch + 5 : grouped.batches_per_epoch + 8]


def test_group_by_length_keeps_the_task_mix_in_every_batch():
    import random

    rng = random.Random(1)
    tasks = ["report" if i % 2 else "vqa" for i in range(128)]  # reports short, questions long
    lengths = [rng.randint(80, 120) if t == "report" else rng.randint(100, 400) for t in tasks]
    by_length = GlobalBatchSampler(128, 8, 1, 0, seed=2, lengths=lengths)
    mixed = GlobalBatchSampler(128, 8, 1, 0, seed=2, lengths=lengths, tasks=tasks)
    epoch = _take(mixed, mixed.batches_per_epoch)
    assert sorted(i for batch in epoch for i in batch) == list(range(128))
    assert all(sum(tasks[i] == "report" for i in batch) == 4 for batch in epoch)  # half and half, as the data
    assert any(len({tasks[i] for i in b}) == 1 for b in _take(by_length, by_length.batches_per_epoch))

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    plain = GlobalBatchSampler(128, 8, 1, 0, seed=2)
    assert padding(epoch) < 0.75 * padding(_take(plain, plain.batches_per_epoch))
    with pytest.raises(ValueError, match="tasks has 3 entries for 128 samples"):
        GlobalBatchSampler(128, 8, 1, 0, seed=2, lengths=lengths, tasks=tasks[:3])


def test_task_weights_draw_each_sample_as_often_as_its_weight_says_and_resume():
    from collections import Counter

    weights = [2.0] * 10 + [0.5] * 20 + [0.0] * 5 + [1.0] * 3  # reports twice, half the questions, no captions
    sampler = GlobalBatchSampler(38, 4, 1, 0, seed=5, weights=weights)
    assert sampler.epoch_size == 20 + 10 + 0 + 3 and sampler.batches_per_epoch == 9
    epochs = [[i for b in _take_epoch(sampler, e) for i in b] for e in range(2)]
    for drawn in epochs:
        counts = Counter(drawn)
        assert all(counts[i] == 2 for i in range(10)) and all(counts[i] == 1 for i in range(35, 38))
        assert sum(counts[i] for i in range(10, 30)) == 10 and max(counts[i] for i in range(10, 30)) == 1
        assert not any(counts[i] for i in range(30, 35))
    halves = [{i for i in drawn if 10 <= i < 30} for drawn in epochs]
    assert halves[0] != halves[1]  # a fresh half each epoch
    resumed = GlobalBatchSampler(38, 4, 1, 0, seed=5, weights=weights)
    resumed.start_epoch, resumed.start_batch = 1, 3
    assert _take(resumed, 4) == _take(sampler, sampler.batches_per_epoch + 7)[sampler.batches_per_epoch + 3:]
    # no weights and all-ones weights: the very same order as before weights existed
    assert _take(GlobalBatchSampler(38, 4, 1, 0, seed=5, weights=[1.0] * 38), 20) == _take(
        GlobalBatchSampler(38, 4, 1, 0, seed=5), 20)
    with pytest.raises(ValueError, match="sample 3 has weight -1"):
        GlobalBatchSampler(5, 2, 1, 0, seed=0, weights=[1, 1, 1, -1, 1])


def test_task_weights_come_from_each_records_task_and_bad_ones_are_refused():
    from types import SimpleNamespace

    from medvlm.train.recipe import task_sample_weights

    data = SimpleNamespace(tasks=lambda: ["report", "vqa", "report", None])

    def cfg(weights, recipe="finetune"):
        return SimpleNamespace(recipe=recipe, data=SimpleNamespace(task_weights=weights, train="train.json"))

    assert task_sample_weights(cfg({"report": 2, "vqa": 0.5}), data) == [2.0, 0.5, 2.0, 1.0]
    with pytest.raises(ValueError, match=r"names task 'reprot', which no record of train.json has \(their tasks: "
                                         r"\['None', 'report', 'vqa'\]\)"):
        task_sample_weights(cfg({"reprot": 2}), data)
    with pytest.raises(ValueError, match="task_weights.vqa=-1: give a number >= 0"):
        task_sample_weights(cfg({"vqa": -1}), data)
    with pytest.raises(ValueError, match="leaves no record to train on"):
        task_sample_weights(cfg({"report": 0, "vqa": 0, "None": 0}), data)
    with pytest.raises(ValueError, match="recipe 'encoder'"):
        task_sample_weights(cfg({"report": 2}, recipe="encoder"), data)


def _take_epoch(sampler, epoch):
    sampler.start_epoch, sampler.start_batch = epoch, 0
    batches = _take(sampler, sampler.batches_per_epoch)
    sampler.start_epoch = 0
    return batches


def test_loss_weightings():
    sums, counts = torch.tensor([10.0, 2.0]), torch.tensor([10, 1])  # a long report, a one-word answer
    assert weighted_loss(sums, counts, "token", world=1, step_tokens=11, step_samples=2) == 12 / 11
    assert weighted_loss(sums, counts, "sample", world=1, step_tokens=11, step_samples=2) == (1.0 + 2.0) / 2
    # token_global: the same per-token weight in every step, also in a step of short answers only
    long_step = weighted_loss(sums, counts, "token_global", world=1, step_tokens=11, step_samples=2, mean_labelled=4)
    short_step = weighted_loss(sums[1:], counts[1:], "token_global", world=1, step_tokens=1, step_samples=1,
                               mean_labelled=4)
    assert long_step == 12 / 8 and short_step == 2 / 4
    assert weighted_loss(sums[1:], counts[1:], "token", world=1, step_tokens=1, step_samples=1) == 2.0  # 4x more
    with pytest.raises(ValueError, match="mean learned tokens"):
        weighted_loss(sums, counts, "token_global", world=1, step_tokens=11, step_samples=2)


def test_loss_counts_only_labelled_tokens():
    logits = torch.zeros(1, 4, 5)
    labels = torch.tensor([[-100, 2, -100, 3]])
    loss, count = token_loss_sum(logits, labels)
    assert count == 2
    assert torch.isclose(loss, 2 * torch.log(torch.tensor(5.0)))


def test_right_padded_masks_are_told_from_left_padded_and_holey_ones():
    # labelled_loss_sums drops the attention mask only for these (causal attention then does the same job)
    assert right_padded(torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]))
    assert not right_padded(torch.tensor([[1, 1, 1], [0, 1, 1]]))  # left padding
    assert not right_padded(torch.tensor([[1, 0, 1]]))  # a hole: not padding at all
    assert not right_padded(None) and not right_padded(torch.ones(1, 2, 2))


def test_cosine_schedule_warms_up_then_decays_to_zero():
    assert lr_multiplier(0, 100, 10, "cosine") == 0.1
    assert lr_multiplier(9, 100, 10, "cosine") == 1.0
    assert abs(lr_multiplier(100, 100, 10, "cosine")) < 1e-9
    assert lr_multiplier(50, 100, 0, "constant") == 1.0


def test_per_sample_sums_let_a_one_word_answer_weigh_as_much_as_a_report():
    from medvlm.train.recipe import sample_loss_sums

    logits = torch.zeros(2, 6, 5)
    labels = torch.tensor([[-100, 1, 2, 3, 4, 1], [-100, -100, -100, -100, -100, 2]])
    sums, counts = sample_loss_sums(logits, labels)
    assert counts.tolist() == [5, 1]
    per_sample_mean = sums / counts
    assert torch.allclose(per_sample_mean, torch.log(torch.tensor(5.0)).repeat(2))


def test_a_shared_feature_cache_is_reused_for_the_same_encoder_and_rebuilt_for_another(tiny_cxr, tmp_path):
    from medvlm.data.dataset import TrainingDataset
    from medvlm.models import TinyPresetConfig, build_model
    from medvlm.train.builders import CachedFeatureDataset

    small = dict(image_size=32, patch_size=8, vision_hidden_size=32, text_hidden_size=64, vocab_size=300)
    model, processor = build_model(TinyPresetConfig(**small), texts=["No effusion."] * 10)
    dataset = TrainingDataset.from_file(tiny_cxr / "train.json", processor, image_folder=tiny_cxr)
    cache = tmp_path / "shared_cache"
    first = CachedFeatureDataset.build(dataset, model, cache, progress=False)
    calls = []
    encode = model.encode_images
    model.encode_images = lambda pixels: calls.append(len(pixels)) or encode(pixels)
    again = CachedFeatureDataset.build(dataset, model, cache, progress=False)  # a later stage, same encoder
    assert calls == [] and torch.equal(again.features["0"], first.features["0"])
    model.vision_tower.select = "keep_cls"  # other features from the same weights: encoded again
    other = CachedFeatureDataset.build(dataset, model, cache, progress=False)
    assert sum(calls) == len(other.features) - 1  # every image (the fingerprint is the one other entry)
    assert other.features["0"].shape[0] == first.features["0"].shape[0] + 1  # the CLS token kept
