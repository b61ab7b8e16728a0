"""Datasets in the layouts users own, crops and augmentation, synthetic pseudo-videos."""
