"""Analysis: session -> timeline -> segmentation (HMM) -> detectors -> Diagnosis. Pure functions."""
