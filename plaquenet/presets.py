"""The sizes of the synthetic cohort (`plaquenet phantom --preset NAME`), one
home. Apart from the phantom package on purpose: the CLI lists them when it
builds its parser, also where the phantom's own imports (OpenCV) are absent,
e.g. beside pycaffe in the Caffe root."""

from typing import Dict, NamedTuple


class Preset(NamedTuple):
    patients: int
    slices: int  # per patient, skull base to vertex


# `plaquenet phantom --preset NAME` (explicit --patients/--slices override),
# seed 0; plaque slices are those the radiologist outlined, the only ones §4.1 uses:
PRESETS: Dict[str, Preset] = {
    # `make demo`: the whole job in minutes on a laptop; 85 plaque slices
    "demo": Preset(10, 20),
    # `make reproduce-quick` in about 20 minutes on 2 cores: the paper's slices,
    # an eighth of its patients (10 train / 2 test); 133 train + 34 test plaque
    # slices after `plaquenet import` and `tiles` (2026-11-30). Scoring every
    # snapshot forwards all of them (about 1 s each here), so the patients are
    # what the quick run's time is made of.
    "quick": Preset(12, 33),
    # §4.1: 96 patients, 77 train / 19 test, 982 + 242 = 1,224 plaque slices
    # (12.75 a patient). Plaques show on more slices the thinner the slices are
    # cut; 33 slices from skull base to vertex (3.1-3.8 mm apart) give 1,244
    # (12.96 a patient; 32 give 1,200), counted over `phantom_patient`; which
    # patients land in the test split depends on the import's order. Writing
    # one patient: about 7 s on a 2-core Xeon shared with other jobs (load 5),
    # 2026-11-30; 4.7 s of it the arrays.
    "paper": Preset(96, 33),
}
