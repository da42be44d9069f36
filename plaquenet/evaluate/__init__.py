"""What the score stage (plaquenet/score.py) is built from, paper §3.3, §4.3, §5:
`sweep` (exact best-F threshold), `metrics` (pixel precision, recall,
F-measure), `lesions` (lesion-wise detection), `inference` (the net on lesion
slices, volumes and tiles), `curves` (training loss and per-snapshot scores,
Fig. 5)."""
