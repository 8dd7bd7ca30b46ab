"""Proper scores, calibration metrics and scorers for predictive distributions."""
