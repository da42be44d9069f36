"""The training loss of a run for the curves (Fig. 5): from train.csv (the torch
engine's) first, else from a Caffe log; the run folder is tests/conftest.py's `tiny_run`."""

import pytest

from plaquenet.errors import InputError
from plaquenet.evaluate.curves import read_training_loss


def test_training_loss_from_train_csv_first_else_train_log(tiny_run, caffe_log):
    run_dir, _ = tiny_run
    (run_dir / "train.log").write_text(caffe_log)
    loss = read_training_loss(run_dir)
    assert loss.source.name == "train.csv"
    assert loss.iteration.tolist() == list(range(101))
    assert loss.loss[10] == pytest.approx(2.0 / 12)  # smoothed_loss, as Caffe's log prints it

    (run_dir / "train.csv").unlink()
    loss = read_training_loss(run_dir)
    assert loss.source.name == "train.log"
    assert loss.iteration.tolist() == [0, 20, 40] and loss.loss.tolist() == [0.25, 0.125, 0.0625]

    (run_dir / "train.log").write_text("I1124 solver.cpp:272] Solving plaquenet\n")
    with pytest.raises(InputError, match="train.log: holds no training loss"):
        read_training_loss(run_dir)
    (run_dir / "train.log").unlink()
    assert read_training_loss(run_dir) is None


def test_a_resumed_log_keeps_the_last_value_of_an_iteration(tmp_path, caffe_log):
    (tmp_path / "train.log").write_text(caffe_log + caffe_log.replace("0.125", "0.5"))
    assert read_training_loss(tmp_path).loss.tolist() == [0.25, 0.5, 0.0625]
