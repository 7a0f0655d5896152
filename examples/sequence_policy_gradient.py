"""Policy gradient for a tiny autoregressive sequence model, as ONE stochgrad expression.

    objective = E[reward(y, prompt), y ~ Policy(prompt)]

``Policy`` is a user-defined distribution (:class:`stochgrad.UserDistribution`): a sampler that
generates ``T = 4`` tokens over a vocabulary of 3 from stochgrad's uniform noise (an inverse-CDF
draw per step), and the sequence's log-probability.  Both run a small torch module whose weights
they close over; no stochgrad internals are subclassed.  Each of the 3 prompts ``k`` asks for token
``k``: ``reward(y, prompt)`` counts the tokens of ``y`` equal to the prompt (0 to 4).

The planner gives the sequence node the score function (discrete, no support declared) with its
default leave-one-out baseline (Kool et al. 2019, "RLOO"): with ``batch_axes=1`` the prompts are
independent, so each sample's baseline is the mean reward of the *other* samples of the same prompt
-- the group baseline of GRPO without its normalization.  The gradient reaches the module through
``log_prob``: ``grad E[r(y)] = E[(r(y) - b) grad log pi(y)]``.

    python examples/sequence_policy_gradient.py [--steps 200] [--n 8] [--seed 0]

The same gradient written by hand in plain torch is :func:`hand_written_loss` (per-prompt
leave-one-out, the GRPO group baseline without its normalization); :func:`gradients` computes both
for the same sampled sequences, and the script prints their largest difference (0, or float64
rounding) before training.  The mean reward printed climbs from about 4/3 (uniform tokens) towards 4.
"""

from __future__ import annotations

import argparse
import time

import torch

import stochgrad as sg

T, V, P, H = 4, 3, 3, 16  # tokens per sequence, vocabulary, prompts, hidden width
BOS = V  # the start token's index in the token embedding


class TinyPolicy(torch.nn.Module):
    """``logits(prompt, previous token) = out(tanh(embed_token(prev) + embed_prompt(prompt)))``."""

    def __init__(self) -> None:
        super().__init__()
        self.token = torch.nn.Embedding(V + 1, H)
        self.prompt = torch.nn.Embedding(P, H)
        self.out = torch.nn.Linear(H, V)

    def logits(self, prompt: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.token(prev) + self.prompt(prompt)))


def make_policy(net: TinyPolicy) -> sg.UserDistribution:
    """The user distribution ``Policy(prompt)`` over sequences of shape ``(P, T)`` (one per prompt)."""

    def generate(params: dict, noise: sg.userdist.Noise) -> torch.Tensor:
        u = noise("uniform", (P, T))  # (rows, P, T): all the randomness, from stochgrad's stream
        rows = u.shape[0]
        prompt = params["prompt"].long().expand(rows, P)
        prev = torch.full((rows, P), BOS, dtype=torch.long)
        tokens = []
        with torch.no_grad():  # the score function needs no gradient through the sample
            for t in range(T):  # a loop over time steps; every sample and prompt at once
                cdf = torch.cumsum(torch.softmax(net.logits(prompt, prev), -1), -1)
                prev = (u[..., t:t + 1] > cdf[..., :-1]).sum(-1)  # inverse CDF of the categorical
                tokens.append(prev)
        return torch.stack(tokens, -1).to(torch.float64)  # token ids as floats

    def sequence_log_prob(params: dict, y: torch.Tensor) -> torch.Tensor:
        tok = y.long()  # (rows, P, T)
        rows = tok.shape[0]
        prompt = params["prompt"].long().expand(rows, P)[..., None].expand(rows, P, T)
        prev = torch.cat([torch.full_like(tok[..., :1], BOS), tok[..., :-1]], -1)
        logp = torch.log_softmax(net.logits(prompt, prev), -1).gather(-1, tok[..., None])[..., 0]
        return logp.sum(-1)  # (rows, P): one log-probability per sequence (per prompt)

    return sg.UserDistribution("Policy", ("prompt",), sample=generate, log_prob=sequence_log_prob,
                               value_shape=lambda shapes: shapes["prompt"] + (T,), discrete=True, event_rank=1,
                               doc="a tiny autoregressive policy over sequences of 4 tokens")


def reward(y: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
    """The number of tokens of each sequence equal to its prompt: shape (rows, P)."""
    return (y == prompt[..., None]).to(torch.float64).sum(-1)


def hand_written_loss(net: TinyPolicy, y: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """The same policy gradient written by hand in plain torch, GRPO-style without the normalization:
    for sequences ``y`` of shape (n, P, T) sampled for the prompts, the per-prompt leave-one-out
    (group) baseline ``b_i = mean of the other n - 1 rewards of the prompt`` and the loss
    ``-(1/P) sum_prompts [mean_i r_i + mean_i (r_i - b_i) (log pi(y_i) - stop log pi(y_i))]``: its
    value is minus the mean reward, its gradient ``-(1/P) sum_prompts mean_i (r_i - b_i) grad log pi(y_i)``."""
    tok, n = y.long(), y.shape[0]
    prompt = prompts.long()[None, :, None].expand(tok.shape)
    prev = torch.cat([torch.full_like(tok[..., :1], BOS), tok[..., :-1]], -1)
    logp = torch.log_softmax(net.logits(prompt, prev), -1).gather(-1, tok[..., None])[..., 0].sum(-1)  # (n, P)
    r = (tok == prompt).to(torch.float64).sum(-1)  # (n, P): tokens equal to the prompt
    b = (r.sum(0, keepdim=True) - r) / (n - 1)  # leave-one-out within each prompt's group
    return -(r.mean(0) + ((r - b) * (logp - logp.detach())).mean(0)).sum() / len(prompts)


def gradients(net: TinyPolicy, prompts: torch.Tensor, n: int, seed: int
              ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """stochgrad's gradient of ``-objective / P`` (first call of the compiled objective with ``seed``) and
    the hand-written loss's gradient on the very sequences stochgrad sampled (captured as the reward
    function sees them): ``(stochgrad grads, hand grads, stochgrad loss, hand loss)``, per parameter."""
    seen: list[torch.Tensor] = []

    def capturing_reward(y: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        seen.append(y.detach())
        return reward(y, prompt)

    expr = sg.parse("E[reward(y, prompt), y ~ Policy(prompt)]", functions={"reward": capturing_reward})
    f = sg.compile(expr, backend="torch", n=n, seed=seed, batch_axes=1)
    params = list(net.parameters())
    loss_sg = -f(prompt=prompts) / len(prompts)
    g_sg = list(torch.autograd.grad(loss_sg, params))
    (y,) = seen  # (n, P, T): the reward saw the samples once
    loss_hand = hand_written_loss(net, y, prompts)
    g_hand = list(torch.autograd.grad(loss_hand, params))
    return g_sg, g_hand, loss_sg.detach(), loss_hand.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--n", type=int, default=8, help="sampled sequences per prompt and step")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    net = TinyPolicy().double()
    policy = make_policy(net)
    if "Policy" in sg.DISTRIBUTIONS:
        sg.unregister_distribution("Policy")
    sg.register_distribution(policy)
    expr = sg.parse("E[reward(y, prompt), y ~ Policy(prompt)]", functions={"reward": reward})
    prompts = torch.arange(P, dtype=torch.float64)
    print(sg.plan(expr, {"prompt": (P,)}, backend="torch", batch_axes=1))
    g_sg, g_hand, _, _ = gradients(net, prompts, args.n, args.seed)
    diff = max(float((a - b).abs().max()) for a, b in zip(g_sg, g_hand))
    print(f"stochgrad gradient vs the hand-written per-prompt leave-one-out loss, same samples: max |diff| {diff:.1e}")

    f = sg.compile(expr, backend="torch", n=args.n, seed=args.seed, batch_axes=1)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    start, window = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        opt.zero_grad()
        total = f(prompt=prompts)  # sum over prompts of the Monte Carlo expected reward
        (-total / P).backward()
        opt.step()
        window.append(total.item() / P)
        if step % 25 == 0 or step == 1:
            print(f"step {step:4d}   mean reward {sum(window) / len(window):.3f} / {T}")
            window = []
    print(f"trained {args.steps} steps in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
