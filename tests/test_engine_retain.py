"""With retain_graph=True, every node keeps the gradient that flowed through it, unchanged by later sums."""

import numpy as np

from tinygrad_lstm import Tensor, ops
from tinygrad_lstm.tensor import walk


def test_grads_in_of_a_shared_weight_are_per_step_terms():
    W = Tensor(np.array([[0.9, 0.2], [-0.3, 0.8]]), requires_grad=True)
    h = Tensor(np.ones((2, 2)))
    expected = []
    for _ in range(4):
        h = (h @ W).tanh()
    loss = h.sum()
    loss.backward(retain_graph=True)
    matmuls = [v for v in walk(loss) if isinstance(v, ops.Op) and v.name == "MatMul"]
    terms = [v.grads_in[1] for v in matmuls]
    assert len(terms) == 4
    np.testing.assert_allclose(sum(terms), W.grad, rtol=1e-12)
    # Each term is its own array: recompute each step's term by hand from the node's saved input and grad.
    for v in matmuls:
        a, _ = v.saved
        expected.append(a.T @ v.grad_out)
    np.testing.assert_allclose(sorted(np.linalg.norm(e) for e in expected), sorted(np.linalg.norm(x) for x in terms))
    # and a second backward through the retained graph adds the same total again
    first = W.grad.copy()
    loss.backward()
    np.testing.assert_allclose(W.grad, 2 * first, rtol=1e-12)


def test_fork_rng_draws_from_its_seed_and_restores_the_stream():
    from tinygrad_lstm import fork_rng, manual_seed

    manual_seed(3)
    expected = [Tensor.randn(2).numpy() for _ in range(2)]
    manual_seed(3)
    first = Tensor.randn(2).numpy()
    with fork_rng(7):
        inner = Tensor.randn(2).numpy()
    with fork_rng(7):
        np.testing.assert_array_equal(Tensor.randn(2).numpy(), inner)
    np.testing.assert_array_equal(first, expected[0])
    np.testing.assert_array_equal(Tensor.randn(2).numpy(), expected[1])  # the outer stream resumed


def test_no_grad_and_enable_grad_work_as_bare_and_called_decorators():
    from tinygrad_lstm import enable_grad, no_grad

    x = Tensor([1.0, 2.0], requires_grad=True)

    @no_grad
    def bare(t):
        """doc kept"""
        return t * 2

    @no_grad()
    def called(t):
        return t * 2

    @enable_grad
    def back_on(t):
        return t * 2

    assert not bare(x).requires_grad and not called(x).requires_grad
    assert bare.__doc__ == "doc kept" and bare.__name__ == "bare"
    with no_grad():
        assert back_on(x).requires_grad
    assert (x * 2).requires_grad  # the switch is restored afterwards
