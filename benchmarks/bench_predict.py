"""Prediction cost of a 64-particle model, as a speed-up over a plain PyTorch loop.

A 64-particle, rank-20 ``MultiSWAGRegressor`` (1-16-16-1 ELU) is fitted on the
toy data with few epochs (200 + 50; the fit is not timed). Then, for 1,000 query
points and ``n_samples=20``, the table compares

- the baseline: a Python loop over the same 64 x 20 = 1,280 posterior draws (the
  very same draws, from ``sklearn_swag._posterior.draws.draw_particle_weights`` with
  each particle's sampling seed), loading each flat weight vector into ONE plain
  ``nn.Sequential`` with ``torch.nn.utils.vector_to_parameters``, running it on
  the 1,000 points, undoing the target scaling, then per-particle mean and
  variance and the mixture mean and std in numpy;
- ``reg.predict_dist(X)`` and ``reg.predict(X, return_std=True)``.

Both sides include drawing the weights; the draws alone are timed too, for
reference. Before any ratio is printed the script asserts that the baseline and
the package give the same mean and std (to 1e-5). Every timing is the min of 3
runs, at torch's thread count and at one thread (``thr`` says which won), and
``speed-up`` is baseline seconds / package seconds (the target is >= 3).

Run from the repository root::

    python benchmarks/bench_predict.py
"""

import numpy as np
import torch
from _common import best_time, torch_threads_line
from _data import toy_data, toy_query
from _seed_workload import seed_sequential
from torch.nn.utils import vector_to_parameters

from sklearn_swag import MultiSWAGRegressor
from sklearn_swag._posterior.draws import draw_particle_weights

N_MODELS, N_SAMPLES, N_QUERY, REPEATS = 64, 20, 1000, 3
SAMPLE_SEED = 2  # column of ``particle_seeds_`` that seeds the posterior draws


def particle_draws(reg, p):
    return draw_particle_weights(
        reg.swag_mean_[p],
        reg.swag_sq_mean_[p],
        reg.swag_deviations_[p],
        reg.n_samples,
        reg.scale,
        reg.particle_seeds_[p, SAMPLE_SEED],
    )


def all_draws(reg):
    return [particle_draws(reg, p) for p in range(reg.n_models)]


def baseline_predict(reg, net, X):
    """The plain loop: one network, one draw at a time; moments in numpy."""
    X_t = torch.as_tensor(X, dtype=torch.float32)
    means, variances = [], []
    with torch.no_grad():
        for p in range(reg.n_models):
            outs = []
            for theta in particle_draws(reg, p):
                vector_to_parameters(theta.to(torch.float32), net.parameters())
                outs.append(net(X_t).numpy()[:, 0])
            outs = np.asarray(outs, dtype=np.float64)  # (n_samples, n_rows)
            outs = outs * reg.y_scale_[0] + reg.y_mean_[0]  # the target's units
            means.append(outs.mean(axis=0))
            variances.append(outs.var(axis=0))
    means, variances = np.asarray(means), np.asarray(variances)
    mean = means.mean(axis=0)
    var = variances.mean(axis=0) + ((means - mean) ** 2).mean(axis=0)
    return mean, np.sqrt(var + reg.noise_variance_[0])


def main():
    X, y = toy_data()
    reg = MultiSWAGRegressor(
        module__hidden_layer_sizes=(16, 16),
        module__activation="elu",
        n_models=N_MODELS,
        rank=20,
        pretrain_epochs=200,
        swag_epochs=50,
        lr=0.03,
        batch_size=None,
        n_samples=N_SAMPLES,
        noise="homoscedastic",  # the seed's network alone
        n_jobs=1,
        random_state=0,
    ).fit(X, y)
    X_query = toy_query(N_QUERY)

    net = seed_sequential().eval()
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == reg.n_params_, (n_params, reg.n_params_)

    def package_dist():
        dist = reg.predict_dist(X_query)
        return dist.mean(), dist.std()

    # Warm up both paths once, then check that they agree before timing.
    base_mean, base_std = baseline_predict(reg, net, X_query)
    pkg_mean, pkg_std = reg.predict(X_query, return_std=True)
    np.testing.assert_allclose(pkg_mean, base_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pkg_std, base_std, rtol=1e-5, atol=1e-5)
    mean_err = float(np.max(np.abs(pkg_mean - base_mean)))
    std_err = float(np.max(np.abs(pkg_std - base_std)))

    t_base, thr_base, _ = best_time(
        lambda: baseline_predict(reg, net, X_query), REPEATS
    )
    t_draws, thr_draws, _ = best_time(lambda: all_draws(reg), REPEATS)
    t_dist, thr_dist, (d_mean, d_std) = best_time(package_dist, REPEATS)
    t_pred, thr_pred, _ = best_time(
        lambda: reg.predict(X_query, return_std=True), REPEATS
    )
    np.testing.assert_allclose(d_mean, base_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_std, base_std, rtol=1e-5, atol=1e-5)

    n_draws = N_MODELS * N_SAMPLES
    print(
        f"{torch_threads_line()}; {N_MODELS} particles x {N_SAMPLES} draws = "
        f"{n_draws} networks of {reg.n_params_} weights, {N_QUERY} query points, "
        f"min of {REPEATS}"
    )
    print(
        f"package vs baseline: max |mean diff| {mean_err:.2e}, "
        f"max |std diff| {std_err:.2e} (asserted <= 1e-5)"
    )
    header = f"{'what':<34} {'seconds':>8} {'thr':>3} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    print(f"{'baseline loop over draws':<34} {t_base:>8.4f} {thr_base:>3} {1:>9.2f}")
    print(f"{'  of which: the draws alone':<34} {t_draws:>8.4f} {thr_draws:>3} {'':>9}")
    print(
        f"{'reg.predict_dist(X) + mean/std':<34} {t_dist:>8.4f} {thr_dist:>3} "
        f"{t_base / t_dist:>9.2f}"
    )
    print(
        f"{'reg.predict(X, return_std=True)':<34} {t_pred:>8.4f} {thr_pred:>3} "
        f"{t_base / t_pred:>9.2f}"
    )
    worst = t_base / max(t_dist, t_pred)
    print(f"target speed-up >= 3: {'met' if worst >= 3 else 'NOT met'} ({worst:.2f})")


if __name__ == "__main__":
    main()
