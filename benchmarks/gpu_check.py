"""One prepared CUDA check of the torch backend (for a session that is lent a GPU); runs on the CPU too.

1. Correctness on the device: estimates on ``device=`` (float32 and float64) against closed forms
   (pathwise, score function, enumeration), a compiled objective's second derivative, and a fused
   objective (``fuse=True``) equal to the eager one with the same seed, all staying on the device.
2. Timing for pathwise ``E[z**2]`` and a 10-category Gumbel-softmax cost, in float32, against
   hand-written eager torch, the same hand-written function under ``torch.compile``, and the cost of
   just filling the samples with normals, in the same run: ``sg.compile`` eager and fused (the
   issue's goal: fused >= 2x faster than hand-written eager at n = 1e8 on a GPU), and ``sg.estimate``.

    python benchmarks/gpu_check.py                       # CUDA: n = 1e7 and 1e8
    python benchmarks/gpu_check.py --device cpu --sizes 1000000 10000000
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

import stochgrad as sg

PATHWISE = "E[z**2, z ~ Normal(mu, sigma)]"
GUMBEL = "E[sum(w * y), y ~ Categorical(logits=l)]"


def check(name: str, ok: bool, detail: str) -> bool:
    print(f"{'ok ' if ok else 'FAIL'} {name}: {detail}")
    return ok


def correctness(device: str) -> bool:
    good = True
    for dtype in ("float64", "float32"):
        opts = dict(backend="torch", backend_options={"device": device, "dtype": dtype}, seed=0)
        r = sg.estimate(PATHWISE, {"mu": 1.0, "sigma": 2.0}, n=1_000_000, **opts)
        good &= check(f"pathwise {dtype}", abs(r.grad["mu"] - 2) < 6 * r.stderr["mu"], f"{r.grad['mu']:.5f} ± {r.stderr['mu']:.1e}")
        r = sg.estimate("E[z > 0, z ~ Normal(mu, 1)]", {"mu": 0.3}, n=1_000_000, **opts)
        exact = math.exp(-0.045) / math.sqrt(2 * math.pi)
        good &= check(f"score {dtype}", abs(r.grad["mu"] - exact) < 6 * r.stderr["mu"], f"{r.grad['mu']:.5f} vs {exact:.5f}")
        r = sg.estimate(GUMBEL, {"w": np.arange(10.0), "l": np.zeros(10)}, n=1000, **opts)
        good &= check(f"enumerate {dtype}", abs(r.value - 4.5) < 1e-4, f"{r.value}")
    f = sg.compile("E[z**3, z ~ Normal(mu, 1)]", backend="torch", backend_options={"device": device}, n=1_000_000, seed=1)
    mu = torch.tensor(0.7, dtype=torch.float64, device=device, requires_grad=True)
    (g,) = torch.autograd.grad(f(mu=mu), mu, create_graph=True)
    (h,) = torch.autograd.grad(g, mu)
    good &= check("compiled second derivative", abs(h.item() - 4.2) < 0.1 and h.device.type == mu.device.type,
                  f"{h.item():.4f}")
    fused, eager = (sg.compile(GUMBEL, backend="torch", backend_options={"device": device}, n=100_000, seed=3, fuse=fuse,
                               estimators={"y": "relaxed:temperature=0.5"}) for fuse in (True, False))
    w = torch.arange(10.0, dtype=torch.float64, device=device)
    for call in range(3):  # the first fused call runs eagerly; the later ones are compiled
        grads = []
        for f in (fused, eager):
            lt = torch.zeros(10, dtype=torch.float64, device=device, requires_grad=True)
            grads.append(torch.autograd.grad(f(l=lt, w=w), lt)[0])
        good &= check(f"fused equals eager, call {call}", torch.allclose(grads[0], grads[1], rtol=1e-9, atol=1e-12)
                      and grads[0].device.type == lt.device.type, f"max diff {float((grads[0] - grads[1]).abs().max()):.1e}")
    return good


def timed(fn: Callable[[], object], device: str, repeats: int = 5) -> float:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fn()
    sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return float(np.median(out)) * 1e3


def timings(device: str, sizes: list[int]) -> None:
    f32 = dict(device=device, dtype=torch.float32)
    for name, text, width in (("pathwise", PATHWISE, 1), ("gumbel10", GUMBEL, 10)):
        for n in sizes:
            if name == "pathwise":
                def params() -> dict:
                    return {"mu": torch.tensor(12.0, **f32, requires_grad=True),
                            "sigma": torch.tensor(42.0, **f32, requires_grad=True)}

                def hand(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
                    z = mu + sigma * torch.randn(n, **f32)
                    return (z * z).mean()
                numeric, opts = {"mu": 12.0, "sigma": 42.0}, {}
            else:
                w = torch.arange(10, **f32)

                def params() -> dict:
                    return {"l": torch.zeros(10, **f32, requires_grad=True), "w": w}

                def hand(l: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
                    u = torch.rand(n, 10, **f32).clamp_(1e-7, 1 - 1e-7)
                    y = torch.softmax((torch.log_softmax(l, -1) - torch.log(-torch.log(u))) / 0.5, dim=-1)
                    return (y @ w).mean()
                numeric, opts = {"l": np.zeros(10), "w": np.arange(10.0)}, {"estimators": {"y": "relaxed:temperature=0.5"}}
            hand_compiled = torch.compile(hand, dynamic=False)
            eager, fused = (sg.compile(text, backend="torch", n=n, fuse=fuse,
                                       backend_options={"dtype": "float32", "device": device}, **opts)
                            for fuse in (False, True))

            def grad_of(fn: Callable[..., torch.Tensor]) -> Callable[[], object]:
                def run() -> object:
                    p = params()
                    return torch.autograd.grad(fn(**p), [v for v in p.values() if v.requires_grad])
                return run

            row = {
                "fill": timed(lambda: torch.randn(n * width, **f32), device),
                "hand eager": timed(grad_of(hand), device),
                "hand torch.compile": timed(grad_of(hand_compiled), device),
                "sg.compile": timed(grad_of(eager), device),
                "sg.compile fuse": timed(grad_of(fused), device),
                "sg.estimate": timed(lambda: sg.estimate(text, numeric, n=n, backend="torch",
                                                         backend_options={"dtype": "float32", "device": device}, wrt=[next(iter(numeric))], **opts), device, 3),
            }
            cells = ", ".join(f"{k} {v:.2f} ms" for k, v in row.items())
            print(f"{name} n={n:.0e}: {cells}; fused speed-up over hand eager {row['hand eager'] / row['sg.compile fuse']:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000_000, 100_000_000])
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device")
        return 2
    print(torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU", torch.__version__)
    ok = correctness(args.device)
    timings(args.device, args.sizes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
