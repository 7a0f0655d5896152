"""The policy-gradient recipe (examples/sequence_policy_gradient.py): stochgrad's RLOO gradient for a
user-defined sequence distribution EQUALS the hand-written plain-torch per-prompt leave-one-out (GRPO
group baseline) loss's gradient for the same sampled sequences, in float64 (torch only: the policy is
a torch module)."""

import importlib.util
import pathlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stochgrad as sg

_PATH = pathlib.Path(__file__).resolve().parent.parent / "examples" / "sequence_policy_gradient.py"
_spec = importlib.util.spec_from_file_location("sequence_policy_gradient", _PATH)
ex = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ex)


@pytest.fixture
def policy_net():
    """A fresh TinyPolicy whose ``Policy`` distribution is registered for the test, and removed after."""
    made = []

    def make(seed):
        torch.manual_seed(seed)
        net = ex.TinyPolicy().double()
        if "Policy" in sg.DISTRIBUTIONS:
            sg.unregister_distribution("Policy")
        sg.register_distribution(ex.make_policy(net))
        made.append(net)
        return net

    yield make
    if "Policy" in sg.DISTRIBUTIONS:
        sg.unregister_distribution("Policy")


def _max_diff(a, b):
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])  # make() re-registers
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 9),
       prompts=st.lists(st.integers(0, ex.P - 1), min_size=ex.P, max_size=ex.P))
def test_stochgrad_gradient_equals_the_hand_written_group_baseline_loss(policy_net, seed, n, prompts):
    net = policy_net(seed % 1000)
    p = torch.tensor(prompts, dtype=torch.float64)
    g_sg, g_hand, loss_sg, loss_hand = ex.gradients(net, p, n, seed)
    scale = max(float(g.abs().max()) for g in g_hand)  # 0 only when every prompt's rewards tie
    assert _max_diff(g_sg, g_hand) <= 1e-10 * max(scale, 1.0)
    assert float(loss_sg) == pytest.approx(float(loss_hand), abs=1e-12)  # both are minus the mean reward


def test_a_wrong_baseline_is_told_apart(policy_net):
    """The check can fail: a hand-written loss whose baseline pools every prompt's rewards (not the
    per-prompt group), or includes the sample itself, gives a clearly different gradient."""
    net = policy_net(0)
    p = torch.arange(ex.P, dtype=torch.float64)
    n = 8
    g_sg, g_hand, _, _ = ex.gradients(net, p, n, seed=5)
    assert _max_diff(g_sg, g_hand) <= 1e-10
    # rebuild the same samples and score with wrong baselines
    seen = []
    expr = sg.parse("E[reward(y, prompt), y ~ Policy(prompt)]",
                    functions={"reward": lambda y, prompt: seen.append(y.detach()) or ex.reward(y, prompt)})
    sg.compile(expr, backend="torch", n=n, seed=5, batch_axes=1)(prompt=p)
    (y,) = seen
    tok = y.long()
    prompt = p.long()[None, :, None].expand(tok.shape)
    prev = torch.cat([torch.full_like(tok[..., :1], ex.BOS), tok[..., :-1]], -1)
    logp = torch.log_softmax(net.logits(prompt, prev), -1).gather(-1, tok[..., None])[..., 0].sum(-1)
    r = (tok == prompt).to(torch.float64).sum(-1)
    params = list(net.parameters())
    for b in (r.mean(0, keepdim=True), (r.sum() - r) / (r.numel() - 1)):  # self included; pooled over prompts
        wrong = -((r - b) * logp).mean(0).sum() / ex.P
        g_wrong = torch.autograd.grad(wrong, params, retain_graph=True)
        assert _max_diff(g_wrong, g_hand) > 1e-3 * max(float(g.abs().max()) for g in g_hand)
