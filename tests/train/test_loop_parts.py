import torch

from medvlm.train.recipe import GlobalBatchSampler, token_loss_sum
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


def test_loss_counts_only_labelled_tokens():
    logits = torch.zeros(1, 4, 5)
    labels = torch.tensor([[-100, 2, -100, 3]])
    loss, count = token_loss_sum(logits, labels)
    assert count == 2
    assert torch.isclose(loss, 2 * torch.log(torch.tensor(5.0)))


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
