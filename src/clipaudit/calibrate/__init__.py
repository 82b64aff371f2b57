"""Calibration on real photographs: held-out splits and thresholds chosen on them."""
