"""train.log in `caffe train`'s format, as BVLC's tools/extra/parse_log.py reads it."""

import datetime
import re

import pytest

from plaquenet.caffe.log import CaffeLog, caffe_log_losses, cpp_number, glog_line

# The patterns of BVLC/caffe tools/extra/parse_log.py and extract_seconds.py.
ITERATION = re.compile(r"Iteration (\d+)")
TRAIN_OUTPUT = re.compile(r"Train net output #(\d+): (\S+) = ([\.\deE+-]+)")
LEARNING_RATE = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")


def _parse_time(line, year):
    # extract_seconds.extract_datetime_from_line, restated.
    head, clock = line.strip().split()[:2]
    hms, micro = clock.rsplit(".", 1)
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime.datetime(year, int(head[1:3]), int(head[3:]), h, m, s, int(micro))


def test_glog_prefix():
    when = datetime.datetime(2026, 11, 24, 1, 2, 3, 456789)
    line = glog_line("solver.cpp:218", "Iteration 100, loss = 0.2", when=when, thread_id=123)
    assert line == "I1124 01:02:03.456789   123 solver.cpp:218] Iteration 100, loss = 0.2\n"
    assert _parse_time(line, 2026) == when


def test_cpp_number_formatting():
    assert [cpp_number(x) for x in (1e-5, 0.2, 100.0, 1234567.0, 0.000123456789)] == \
        ["1e-05", "0.2", "100", "1.23457e+06", "0.000123457"]


def test_log_lines_parse_like_parse_log(tmp_path):
    path = tmp_path / "train.log"
    with CaffeLog(path) as log:
        log.solver_parameters('base_lr: 1e-05\nlr_policy: "fixed"\n')
        log.solving("plaquenet", "fixed")
        log.iteration(100, 12.3, 8.13, 100, 0.21)
        log.net_outputs([("loss", 0.2, 1.0)])
        log.learning_rate(100, 1e-5)
        log.snapshot("runs/x/p_iter_200.caffemodel", "runs/x/p_iter_200.solverstate")
        log.done()
    lines = path.read_text().splitlines()
    solving = next(i for i, l in enumerate(lines) if "Solving plaquenet" in l)
    after = lines[solving:]
    for line in after:      # every line from 'Solving' on has a readable glog time
        _parse_time(line, 2026)
    text = "\n".join(after)
    assert "solver.cpp:239] Iteration 100 (12.3 iter/s, 8.13s/100 iters), loss = 0.21" in text
    assert "    Train net output #0: loss = 0.2 (* 1 = 0.2 loss)" in text
    assert TRAIN_OUTPUT.search(text).groups() == ("0", "loss", "0.2")
    assert float(LEARNING_RATE.search(text).group(1)) == 1e-5
    assert [int(m) for m in ITERATION.findall(text)] == [100, 100]
    assert "Snapshotting to binary proto file runs/x/p_iter_200.caffemodel" in text
    assert lines[-1].endswith("Optimization Done.")


def test_caffe_log_losses_read_the_display_and_the_final_lines(caffe_log):
    assert caffe_log_losses(caffe_log.splitlines()) == [(0, 0.25), (20, 0.125), (40, 0.0625)]
    # Without the glog prefix (a log printed by other tools) the lines still parse.
    assert caffe_log_losses(["Iteration 7 (1 iter/s, 1s/1 iters), loss = 3e-05"]) == [(7, 3e-05)]


# The oracle's tags (docs/CAFFE_ORACLE.md, measured with `caffe train` at 99bd997; the 1.0 tag's differ).
ORACLE_TAGS = [
    ("solver_parameters", ("x: 1\n",), ["solver.cpp:45"]),
    ("training_net", ("net.prototxt",), ["solver.cpp:102"]),
    ("finetuning", ("w.caffemodel",), ["solver.cpp:72"]),
    ("resuming", ("s.solverstate",), ["caffe.cpp:235"]),
    ("restoring_history", (), ["sgd_solver.cpp:336"]),
    ("solving", ("net", "fixed"), ["caffe.cpp:239", "solver.cpp:289", "solver.cpp:290"]),
    ("iteration", (1, 1.0, 1.0, 1, 0.5), ["solver.cpp:239"]),
    ("net_outputs", ([("loss", 0.5, 1.0)],), ["solver.cpp:258"]),
    ("net_outputs", ([("loss", 0.5, 1.0)], True), ["solver.cpp:414"]),
    ("learning_rate", (1, 0.1), ["sgd_solver.cpp:112"]),
    ("testing", (1, 0), ["solver.cpp:347"]),
    ("test_loss", (0.5,), ["solver.cpp:401"]),
    ("multistep", (1, 1), ["sgd_solver.cpp:50"]),
    ("clipping", (2.0, 1.0, 0.5), ["sgd_solver.cpp:99"]),
    ("snapshot", ("m.caffemodel", "m.solverstate"), ["solver.cpp:464", "sgd_solver.cpp:284"]),
    ("final_loss", (1, 0.5), ["solver.cpp:327"]),
    ("done", (), ["solver.cpp:332", "caffe.cpp:250"]),
]


@pytest.mark.parametrize("method, args, tags", ORACLE_TAGS, ids=[f"{m}{len(a)}" for m, a, _ in ORACLE_TAGS])
def test_each_line_has_the_oracle_s_source_tag(tmp_path, method, args, tags):
    with CaffeLog(tmp_path / "train.log") as log:
        getattr(log, method)(*args)
    lines = [l for l in (tmp_path / "train.log").read_text().splitlines() if l[:1] == "I"]
    assert [l.split()[3].rstrip("]") for l in lines] == tags

