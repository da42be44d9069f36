"""Evaluation (paper §3.3, §4.3, §5): `sweep` (exact best-F threshold), `metrics`
(pixel precision, recall, F-measure), `inference` (the net on lesion slices and
tiles), `score` (the `plaquenet score` stage)."""
