"""The paper net's six convolutions, each library the engine could use for each
pass, on the same tensors: seconds and the distance from the same convolution
summed in float64 (relative to the result's largest element).

    .venv/bin/python bench/bench_conv.py [--repeats 3]

- scan: the forward pass of one 448x512 slice without autograd (scoring):
  oneDNN (torch's own dispatch) against NNPACK's FFT (what the engine scores with).
- input gradient of a 100-tile batch of 50x50: oneDNN on Caffe's NCHW layout
  (torch's own dispatch), oneDNN on channels-last copies, and NNPACK (the
  convolution of the output gradient with the flipped, transposed filters;
  what the engine trains with).
- filter gradient of the same batch: NCHW against channels-last oneDNN (the
  engine's), and ATen's im2col path with oneDNN off (Caffe's way).
The channels-last columns include neither the copies into that layout nor
their cost, which the engine pays (about 0.1 s per iteration in a profile).
The best of `repeats` after a warm-up (plaquenet/engines/torch/conv.py)."""

import argparse
import time

import torch

# (in channels, out channels, kernel) of prototxt/plaquenet_train.prototxt; every padding (kernel - 1) / 2
LAYERS = [(1, 20, 5), (20, 20, 7), (20, 40, 9), (40, 60, 7), (60, 20, 5), (20, 1, 5)]
LAST = torch.channels_last


def best_seconds(step, repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def error(result: torch.Tensor, exact: torch.Tensor) -> float:
    return float((result.double() - exact).abs().max() / exact.abs().max())


def oneDNN_off(step):
    def run():
        was = torch._C._get_mkldnn_enabled()
        torch._C._set_mkldnn_enabled(False)
        try:
            return step()
        finally:
            torch._C._set_mkldnn_enabled(was)
    return run


def backward(gy, x, w, pad, mask):
    return torch.ops.aten.convolution_backward(gy, x, w, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, mask)


def measure(ways, exact, repeats):
    """{way: (seconds, error)} for each way, a function returning its result."""
    return {name: (best_seconds(step, repeats), error(step(), exact)) for name, step in ways.items()}


def report(title, rows, totals):
    print(f"\n{title}: seconds (error against float64)")
    for label, row in rows:
        print(f"  {label:16}" + "  ".join(f"{n} {s:.3f} ({e:.1e})" for n, (s, e) in row.items()))
        for n, (s, _) in row.items():
            totals[n] = totals.get(n, 0.0) + s
    print(f"  {'all':16}" + "  ".join(f"{n} {s:.3f}" for n, s in totals.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, NNPACK {torch._nnpack_available()}")
    scan, data, weights = [], [], []
    for cin, cout, k in LAYERS:
        pad = k // 2
        w = torch.randn(cout, cin, k, k) * 0.05
        image = torch.randn(1, cin, 448, 512)
        with torch.inference_mode():
            exact = torch.nn.functional.conv2d(image.double(), w.double(), None, 1, pad)
            scan.append((f"{cin:>2} -> {cout:<2} {k}x{k}", measure({
                "oneDNN": lambda: torch.nn.functional.conv2d(image, w, None, 1, pad),
                "NNPACK": lambda: torch._nnpack_spatial_convolution(image, w, None, [pad, pad], [1, 1])},
                exact, args.repeats)))
        x, gy = torch.randn(100, cin, 50, 50), torch.randn(100, cout, 50, 50)
        last = [a.contiguous(memory_format=LAST) for a in (gy, x, w)]
        label = f"{cin:>2} -> {cout:<2} {k}x{k}"
        if cin != 1:   # conv1's input gradient is not taken (the data)
            exact = backward(gy.double(), x.double(), w.double(), pad, [True, False, False])[0]
            flipped = w.flip(2, 3).transpose(0, 1).contiguous()
            data.append((label, measure({
                "NCHW": lambda: backward(gy, x, w, pad, [True, False, False])[0],
                "channels-last": lambda: backward(*last, pad, [True, False, False])[0],
                "NNPACK": lambda: torch._nnpack_spatial_convolution(gy, flipped, None, [k - 1 - pad] * 2, [1, 1])},
                exact, args.repeats)))
        exact = backward(gy.double(), x.double(), w.double(), pad, [False, True, False])[1]
        weights.append((label, measure({
            "NCHW": lambda: backward(gy, x, w, pad, [False, True, False])[1],
            "channels-last": lambda: backward(*last, pad, [False, True, False])[1],
            "im2col": oneDNN_off(lambda: backward(gy, x, w, pad, [False, True, False])[1])},
            exact, args.repeats)))
    report("scan, one 448x512 slice", scan, {})
    report("input gradient, 100 tiles of 50x50", data, {})
    report("filter gradient, 100 tiles of 50x50", weights, {})


if __name__ == "__main__":
    main()
