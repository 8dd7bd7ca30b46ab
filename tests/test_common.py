"""scikit-learn's own estimator checks, on small and fast instances."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_swag import MultiSWAGRegressor


def _small(**params):
    defaults = dict(
        n_models=2,
        rank=3,
        pretrain_epochs=30,
        swag_epochs=5,
        n_samples=3,
        batch_size=None,
        lr=0.03,
        module__hidden_layer_sizes=(16,),
        random_state=0,
    )
    defaults.update(params)
    return MultiSWAGRegressor(**defaults)


@parametrize_with_checks([MultiSWAGRegressor(), _small()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
