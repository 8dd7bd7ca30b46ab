"""The training plan: the threads of a group, the parts checked once."""

import torch

from sklearn_swag._training.plan import TrainingPlan


def _plan(**kwargs):
    base = dict(
        module=None, module_kwargs={}, n_features=3, n_outputs=1,
        criterion=torch.nn.MSELoss, criterion_kwargs={}, optimizer=torch.optim.Adam,
        optimizer_kwargs={}, iterator_kwargs={}, lr=0.01, batch_size=None,
        pretrain_epochs=1, swag_epochs=1, rank=2,
    )  # fmt: skip
    return TrainingPlan(**{**base, **kwargs})


def test_threads_follow_the_work_per_step():
    from sklearn_swag._training.plan import FLOPS_PER_THREAD

    plan = _plan(max_threads=4)
    plan.flops_per_row = 100.0  # a tiny network: 4.8e5 flops per step
    assert plan.threads_for(16, 100) == 1
    plan.flops_per_row = FLOPS_PER_THREAD / 100  # 3 * 128 * 16 / 100 = 61 threads
    assert plan.threads_for(16, 128) == 4  # capped
    plan.batch_size = 1
    assert plan.threads_for(16, 10_000) == 1  # 0.48 * FLOPS_PER_THREAD
    plan.max_threads = None
    plan.batch_size = None
    assert plan.threads_for(16, 128) == 61
    plan.flops_per_row = 0.0  # unknown: one thread
    assert plan.threads_for(16, 128) == 1


def test_check_measures_flops_per_row():
    plan = _plan(module_kwargs={"hidden_layer_sizes": (16,)})
    modules = [plan.build_module(s) for s in (1, 2)]
    plan.check(modules, torch.zeros(8, 3))
    # 3*16 + 16*1 multiply-adds, two flops each
    assert plan.flops_per_row == 2 * (3 * 16 + 16 * 1)
