"""The digits VAE of examples/vae_digits.py, trained data-parallel with DistributedDataParallel.

Each of W processes (gloo on CPU) takes every W-th training image, encodes its batch through the
DDP-wrapped model, and evaluates the same stochgrad ELBO, compiled with ``distributed=True``: its
noise comes from a hash of the seed and the rank, so the W batches of latents are independent
(never ``seed + rank``), and DDP averages the gradients, so the parameters stay the same on every
rank.  Rank 0 prints the loss (the mean over the ranks) and, at the end, the test -ELBO and
whether the ranks' parameters agree.

    python examples/ddp_vae.py [--procs 2] [--epochs 10]            # spawns the processes itself
    torchrun --nproc_per_node=2 examples/ddp_vae.py --epochs 10     # or under torchrun
"""

import argparse
import os
import socket
import sys
import time
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vae_digits import ELBO, VAE, evaluate, load  # the example's model, data and ELBO

import stochgrad as sg


class Encoder(torch.nn.Module):
    """The DDP-wrapped module: its forward encodes, and its decoder is the one the ELBO calls."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.encode(x)


def flat(model: torch.nn.Module) -> np.ndarray:
    return torch.cat([q.detach().reshape(-1) for q in model.parameters()]).numpy().copy()


def train(rank: int, world: int, *, steps: int | None = None, epochs: int = 2, batch: int = 100, lr: float = 1e-3,
          seed: int = 0, log: bool = True) -> dict:
    """Train on this rank (the process group already initialised); ``steps`` stops early. Returns
    the final and initial parameters (flat), the losses and the test -ELBO."""
    torch.manual_seed(seed)  # the same initial model everywhere (DDP broadcasts rank 0's anyway)
    train_x, test_x = load(seed=0)
    mine = train_x[rank::world]  # this rank's share of the data
    vae = VAE()
    initial = flat(vae)
    model = torch.nn.parallel.DistributedDataParallel(Encoder(vae))
    elbo = sg.parse(ELBO, functions={"loglik": sg.UserFunction(vae.loglik, name="loglik")})
    objective = sg.compile(elbo, backend="torch", n=1, seed=seed, distributed=True,
                           backend_options={"dtype": "float32"})
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)  # the same number of batches on every rank
    losses, done, start = [], 0, time.perf_counter()
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(mine.shape[0], generator=order)
        for i in range(0, mine.shape[0] - batch + 1, batch):  # whole batches only: every rank steps alike
            x = mine[perm[i:i + batch]]
            mu, sigma = model(x)
            loss = -objective(x=x, mu=mu, sigma=sigma) / batch
            opt.zero_grad()
            loss.backward()  # DDP averages the gradients over the ranks here
            opt.step()
            mean = loss.detach().clone()
            dist.all_reduce(mean)
            losses.append(mean.item() / world)
            done += 1
            if steps is not None and done >= steps:
                break
        if log and rank == 0:
            print(f"epoch {epoch}  train -ELBO {np.mean(losses[-10:]):8.3f} nats/image  ({done} steps,"
                  f" {time.perf_counter() - start:.1f}s)", flush=True)
        if steps is not None and done >= steps:
            break
    return {"params": flat(vae), "initial": initial, "losses": losses, "test": evaluate(vae, elbo, test_x)}


def _worker(rank: int, world: int, port: int, args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    _run(rank, world, args)
    dist.destroy_process_group()


def _run(rank: int, world: int, args: argparse.Namespace) -> None:
    out = train(rank, world, epochs=args.epochs, batch=args.batch, seed=args.seed)
    got: list = [None] * world
    dist.all_gather_object(got, out["params"])
    if rank == 0:
        same = all(np.array_equal(got[0], g) for g in got)
        print(f"{world} ranks: test -ELBO {out['test']:.3f} nats/image; parameters equal on every rank: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=2, help="processes to spawn (ignored under torchrun)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if "RANK" in os.environ:  # under torchrun
        dist.init_process_group("gloo")
        _run(dist.get_rank(), dist.get_world_size(), args)
        dist.destroy_process_group()
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_worker, args=(args.procs, port, args), nprocs=args.procs, join=True)


if __name__ == "__main__":
    main()
