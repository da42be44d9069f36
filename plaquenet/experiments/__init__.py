"""Experiments: the stages composed into whole runs of the paper's protocol.

A layer above the stages (phantom, import, tiles, train, score): an
experiment makes its cohort, tiles and run folder through them, and reuses
whatever an earlier experiment already wrote. The stages never import it.

    runner.py      cohort -> tiles -> derived run folder -> train/resume -> score,
                   each step reused when its output is already there
    reproduce.py   `plaquenet reproduce`: the paper's experiment (or a quick
                   version of it) with its deviations written beside the results
    claims.py      `plaquenet claims`: the paper's claims, several trainings on
                   shared cohorts and tiles (built on runner.py)
"""
