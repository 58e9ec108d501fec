"""The stacked SGD step with torch's fused kernel against the three written-out passes, in ONE run.

    python benchmarks/fused_sgd.py            # 16 mnist-5k MLPs: the step, then ft's replay
    python benchmarks/fused_sgd.py --quick    # digits, 2 epochs (smoke test)

``shadows._StackedOptimizer`` gives SGD's weight decay and momentum to
``torch._fused_sgd_`` (learning rate 0, then each model's own step in one ``addcmul_``);
``_FUSED_SGD[device type] = False`` makes it take the three passes instead. Both give the
same weights (bitwise where the stacked tensors fill whole SIMD vectors, as at N = 16), so
the ratio is pure speed. Fused and unfused alternate; medians over the repeats; the last
line is ``speedup=X`` for ft's replay. No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

import classunlearn.shadows as shadows
from classunlearn.methods import METHODS, default_params
from classunlearn.train import Recipe

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unlearn_stacked import shadow_setup  # noqa: E402  (benchmarks/unlearn_stacked.py)


def step_times(n: int, repeats: int) -> tuple[float, float, bool]:
    """Median ms of one optimizer step over 16 stacked mnist-5k MLPs: (unfused, fused, same)."""
    shapes = [(784, 256), (256,), (256, 128), (128,), (128, 10), (10,)]
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(n, *s, generator=gen) for s in shapes]
    grads = [torch.randn(n, *s, generator=gen) for s in shapes]
    lr = torch.linspace(0.01, 0.05, n)
    times: dict[bool, list[float]] = {False: [], True: []}
    finals = {}
    for _ in range(repeats):
        for fused in (False, True):
            shadows._FUSED_SGD["cpu"] = fused
            params = [t.clone() for t in start]
            opt = shadows._StackedOptimizer(params, Recipe(epochs=1, batch_size=64, lr=0.05,
                                                           weight_decay=5e-4))
            t0 = time.perf_counter()
            for _ in range(10):
                for p, g in zip(params, grads):
                    p.grad = g.clone()
                opt.step(lr)
            times[fused].append((time.perf_counter() - t0) / 10 * 1000)
            finals[fused] = params
    del shadows._FUSED_SGD["cpu"]
    same = all(torch.equal(a, b) for a, b in zip(finals[False], finals[True]))
    return statistics.median(times[False]), statistics.median(times[True]), same


def replay_times(dataset: str, method: str, epochs: int | None, repeats: int
                 ) -> tuple[float, float]:
    """Median s of `method` replayed on 16 shadows, (unfused, fused)."""
    _, _, models, datas = shadow_setup(dataset, "mlp", 16, False)
    seeds = [2000 * 1000 + i for i in range(16)]
    params = default_params(METHODS[method], dataset)
    if epochs is not None:
        params = type(params)(**{**params.__dict__, "epochs": epochs})
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for fused in (False, True):
            shadows._FUSED_SGD["cpu"] = fused
            t0 = time.perf_counter()
            METHODS[method]().unlearn_many(models, datas, params, seeds, stacked=True)
            times[fused].append(time.perf_counter() - t0)
    del shadows._FUSED_SGD["cpu"]
    return statistics.median(times[False]), statistics.median(times[True])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as in the bench's workers
    unfused, fused, same = step_times(16, args.repeats)
    print(f"optimizer step, 16 stacked mnist-5k MLPs: unfused {unfused:.2f} ms, fused "
          f"{fused:.2f} ms ({unfused / fused:.2f}x); bitwise the same: {same}")
    dataset, epochs = ("digits", 2) if args.quick else ("mnist-5k", None)
    unfused, fused = replay_times(dataset, "ft", epochs, args.repeats)
    print(f"ft on 16 shadows ({dataset}): unfused {unfused:.2f} s, fused {fused:.2f} s")
    print(f"speedup={unfused / fused:.2f}")


if __name__ == "__main__":
    main()
