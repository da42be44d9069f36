"""The backward pass of the paper net's six convolutions on a 100-tile batch,
three ways, on the same tensors: oneDNN on Caffe's NCHW layout (torch's own
dispatch), oneDNN on channels-last copies (what the engine trains with,
plaquenet/engines/torch/conv.py), and ATen's im2col path with oneDNN off.

    .venv/bin/python bench/bench_conv_backward.py [--repeats 3]

Seconds per layer (the best of `repeats` after a warm-up) and their sums.
The channels-last column includes neither the copies into that layout nor
their cost, which the engine pays (about 0.1 s per iteration in a profile)."""

import argparse
import time

import torch

# (in channels, out channels, kernel) of prototxt/plaquenet_train.prototxt
LAYERS = [(1, 20, 5), (20, 20, 7), (20, 40, 9), (40, 60, 7), (60, 20, 5), (20, 1, 5)]


def best_seconds(step, repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    totals = {"nchw": 0.0, "channels-last": 0.0, "im2col": 0.0}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; seconds per layer backward, batch 100 of 50x50")
    for cin, cout, k in LAYERS:
        x, gy = torch.randn(100, cin, 50, 50), torch.randn(100, cout, 50, 50)
        w = torch.randn(cout, cin, k, k) * 0.05
        mask = [cin != 1, True, True]   # conv1's input gradient is not taken (the data)

        def backward(gy=gy, x=x, w=w, mask=mask, pad=k // 2, cout=cout):
            torch.ops.aten.convolution_backward(gy, x, w, [cout], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, mask)

        last = [a.contiguous(memory_format=torch.channels_last) for a in (gy, x, w)]

        def im2col():
            was = torch._C._get_mkldnn_enabled()
            torch._C._set_mkldnn_enabled(False)
            try:
                backward()
            finally:
                torch._C._set_mkldnn_enabled(was)

        row = {"nchw": best_seconds(backward, args.repeats),
               "channels-last": best_seconds(lambda: backward(*last), args.repeats),
               "im2col": best_seconds(im2col, args.repeats)}
        for name, seconds in row.items():
            totals[name] += seconds
        print(f"{cin:>3} -> {cout:<3} {k}x{k}  " + "  ".join(f"{n} {s:.3f}" for n, s in row.items()))
    print("all six   " + "  ".join(f"{n} {s:.3f}" for n, s in totals.items()))


if __name__ == "__main__":
    main()
