"""Chunks of an estimate computed beside each other (stochgrad.parallel) give the numbers of a
sequential run, bit for bit; state carried across chunks keeps them sequential; failures, progress,
memory limits and torch's thread count behave as in a sequential run."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad import parallel
from stochgrad.noise import BLOCK

torch = pytest.importorskip("torch")

#: (expression, parameters, estimators): pathwise, score with leave-one-out, exact enumeration,
#: a relaxation, and two nodes of different kinds together
PROBLEMS = [
    ("E[z**2, z ~ Normal(mu, sigma)]", {"mu": 1.5, "sigma": 0.7}, None),
    ("E[(b - 0.45)**2, b ~ Bernoulli(logits=l)]", {"l": 0.3}, {"b": "score"}),
    ("E[sum(w * y), y ~ Categorical(probs=q)]", {"q": np.array([0.2, 0.3, 0.5]), "w": np.arange(3.0)}, None),
    ("E[sum(w * y), y ~ Categorical(logits=l)]", {"l": np.zeros(4), "w": np.arange(4.0)},
     {"y": "relaxed:temperature=0.5"}),
    ("E[z * b, z ~ Normal(mu, 1), b ~ Bernoulli(probs=p)]", {"mu": 0.2, "p": 0.6}, {"b": "score"}),
]


def _run(problem, workers, n, chunk_size, seed, **kw):
    text, params, estimators = problem
    B = sg.get_backend("torch", chunk_workers=workers)
    return sg.estimate(text, params, n=n, backend=B, seed=seed, estimators=estimators, chunk_size=chunk_size, **kw)


def _same(a, b):
    assert np.array_equal(a.value, b.value) and np.array_equal(a.value_stderr, b.value_stderr)
    for k in a.grad:
        assert np.array_equal(a.grad[k], b.grad[k]), k
        assert np.array_equal(a.stderr[k], b.stderr[k]), k
    assert a.nonfinite == b.nonfinite and a.heavy_tails == b.heavy_tails
    assert a.tail_index.keys() == b.tail_index.keys()
    for k in a.tail_index:
        assert np.array_equal(a.tail_index[k], b.tail_index[k], equal_nan=True), k


@settings(max_examples=10)
@given(problem=st.sampled_from(PROBLEMS), chunks=st.integers(2, 4), extra=st.integers(0, BLOCK - 1),
       workers=st.integers(2, 3), seed=st.integers(0, 2**63))
def test_parallel_chunks_equal_sequential(problem, chunks, extra, workers, seed):
    n = (chunks - 1) * BLOCK + 1 + extra  # the last chunk partial
    a = _run(problem, 1, n, BLOCK, seed)
    b = _run(problem, workers, n, BLOCK, seed)
    assert a.chunk_size == b.chunk_size == BLOCK
    _same(a, b)


def test_workers_follow_chunks_state_and_memory():
    B = sg.get_backend("torch", chunk_workers=4)
    p = sg.plan("E[z**2, z ~ Normal(mu, 1)]")
    assert parallel.workers(B, p, 1, lambda: 10, 100) == 1  # one chunk
    assert parallel.workers(B, p, 3, lambda: 10, 100) == 3  # no more than the chunks
    assert parallel.workers(B, p, 8, lambda: 10, 100) == 4  # no more than the backend's
    assert parallel.workers(B, p, 8, lambda: 40, 100) == 2  # as many as memory_limit holds
    stateful = sg.plan("E[(b - 0.4)**2, b ~ Bernoulli(probs=p)]", estimators={"b": sg.Score(baseline=sg.MovingAverage(0.9))})
    assert parallel.workers(B, stateful, 8, lambda: 10, 100) == 1  # a moving average runs from chunk to chunk
    assert parallel.workers(sg.get_backend("autograd"), p, 8, lambda: 10, 100) == 1  # numpy tracing holds the GIL


def test_moving_average_runs_sequentially_with_the_same_numbers():
    est = {"b": sg.Score(baseline=sg.MovingAverage(0.9))}
    problem = ("E[(b - 0.4)**2, b ~ Bernoulli(probs=p)]", {"p": 0.3}, est)
    _same(_run(problem, 1, 3 * BLOCK, BLOCK, 5), _run(problem, 3, 3 * BLOCK, BLOCK, 5))


def test_progress_in_order_and_threads_restored():
    seen = []
    threads = torch.get_num_threads()
    r = _run(PROBLEMS[0], 2, 4 * BLOCK - 7, BLOCK, 1, progress=lambda done, n: seen.append((done, n)))
    assert seen == [(BLOCK, r.n), (2 * BLOCK, r.n), (3 * BLOCK, r.n), (4 * BLOCK - 7, r.n)]
    assert torch.get_num_threads() == threads


def test_a_failing_chunk_is_raised_and_threads_restored():
    threads = torch.get_num_threads()

    def broken(x):
        raise RuntimeError("broken user function")

    e = sg.parse("E[f(z), z ~ Normal(0, 1)]", functions={"f": sg.UserFunction(broken, name="f")})
    B = sg.get_backend("torch", chunk_workers=2)
    with pytest.raises(Exception, match="broken user function"):
        sg.estimate(e, {}, n=4 * BLOCK, backend=B, seed=0, chunk_size=BLOCK)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_chunk_workers_option_is_checked(bad):
    with pytest.raises(sg.ValidationError, match="chunk_workers"):
        sg.get_backend("torch", chunk_workers=bad)


def test_ordered_keeps_order_and_cancels_after_a_failure():
    import threading
    import time

    started = []
    lock = threading.Lock()

    def fn(i, delay):
        with lock:
            started.append(i)
        time.sleep(delay)
        if i == 1:
            raise ValueError("item 1")
        return i

    items = [(i, 0.02 if i % 2 else 0.0) for i in range(20)]
    assert list(parallel.ordered(lambda i, d: i, items, 3)) == list(range(20))
    with pytest.raises(ValueError, match="item 1"):
        list(parallel.ordered(fn, items, 2))
    assert len(started) <= 5  # the window: later items were never started


def test_overlapping_runs_restore_torch_threads():
    """Estimates on several threads at once (each switching torch to one thread for its chunks) leave
    torch's process-wide thread count as it was, and each gives its sequential numbers."""
    import threading

    threads = torch.get_num_threads()
    expected = _run(PROBLEMS[0], 1, 3 * BLOCK, BLOCK, 11)
    results, errors = [], []

    def work():
        try:
            results.append(_run(PROBLEMS[0], 2, 3 * BLOCK, BLOCK, 11))
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors and len(results) == 3
    for r in results:
        _same(expected, r)
    assert torch.get_num_threads() == threads
