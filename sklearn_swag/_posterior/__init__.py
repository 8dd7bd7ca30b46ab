"""The posterior side: SWAG moments and draws, the noise fit, the predictive
mixtures (with their quantiles and CRPS) and the divergence diagnostics."""
