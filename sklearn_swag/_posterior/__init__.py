"""The posterior side: SWAG moments and draws, the noise fit, the predictive
mixtures and the divergence diagnostics."""
