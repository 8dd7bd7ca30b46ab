"""One optimizer for a stack of particles."""

import torch


def test_fused_optimizer_only_where_the_user_did_not_choose():
    from sklearn_swag._training.optimizers import _fast_optimizer_kwargs

    cpu = torch.device("cpu")
    assert _fast_optimizer_kwargs(torch.optim.Adam, {}, cpu) == {"fused": True}
    assert _fast_optimizer_kwargs(torch.optim.Adam, {"foreach": False}, cpu) == {
        "foreach": False
    }
    assert _fast_optimizer_kwargs(torch.optim.RMSprop, {}, cpu) == {}
