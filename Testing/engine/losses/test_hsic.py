"""HSIC and the alignment loss (ciss_engine/losses/hsic.py) against the definition computed by hand."""
import math

import numpy as np
import pytest
import torch

from ciss_engine.losses.hsic import HsicAlignment, gram_matrix, hsic, normalised_hsic

# 4 paired rows: x (4, 2), y (4, 3)
X = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, -1.0]]
Y = [[0.5, 1.0, 0.0], [1.0, -1.0, 2.0], [0.0, 0.0, 1.0], [2.0, 1.0, -1.0]]


def _by_hand(x: list[list[float]], y: list[list[float]], kernel) -> float:
    """tr(K H L H)/(n−1)² with explicit loops over the Gram entries."""
    n = len(x)
    k = np.array([[kernel(a, b, x) for b in x] for a in x])
    l_ = np.array([[kernel(a, b, y) for b in y] for a in y])
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ l_ @ h)) / (n - 1) ** 2


def _linear(a, b, _rows):
    return sum(p * q for p, q in zip(a, b))


def _gaussian(a, b, rows):
    distances = sorted(math.dist(p, q) for i, p in enumerate(rows) for j, q in enumerate(rows) if i != j)
    middle = len(distances) // 2  # 12 off-diagonal distances: torch's median is the lower middle value
    sigma = distances[middle - 1]
    return math.exp(-math.dist(a, b) ** 2 / (2 * sigma**2))


@pytest.mark.parametrize(("kernel", "by_hand"), [("linear", _linear), ("gaussian", _gaussian)])
def test_hsic_equals_the_definition(kernel, by_hand):
    value = hsic(torch.tensor(X, dtype=torch.float64), torch.tensor(Y, dtype=torch.float64), kernel)
    assert float(value) == pytest.approx(_by_hand(X, Y, by_hand), rel=1e-6)


def test_the_gaussian_bandwidth_is_the_median_distance():
    rows = torch.tensor([[0.0], [1.0], [3.0]])  # distances 1, 2, 3 (each twice): median 2
    torch.testing.assert_close(gram_matrix(rows, "gaussian")[0, 1], torch.tensor(math.exp(-1 / 8)))


@pytest.mark.parametrize("kernel", ["linear", "gaussian"])
def test_a_set_is_fully_dependent_on_itself(kernel):
    x = torch.randn(20, 5, generator=torch.Generator().manual_seed(0))
    assert float(normalised_hsic(x, x, kernel)) == pytest.approx(1.0, abs=1e-5)
    assert float(HsicAlignment(kernel)(x, x)) == pytest.approx(0.0, abs=1e-5)


def test_linear_nhsic_ignores_isotropic_scaling_and_rotation_but_not_shuffling():
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 4, generator=generator, dtype=torch.float64), torch.randn(30, 6, generator=generator, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=generator, dtype=torch.float64))
    reference = normalised_hsic(x, y)
    torch.testing.assert_close(normalised_hsic(7.5 * x @ rotation, y), reference)
    torch.testing.assert_close(normalised_hsic(x, 0.01 * y), reference)
    assert float(normalised_hsic(x, x[torch.randperm(30, generator=generator)])) < 0.5  # pairing matters


def test_independent_sets_score_low_and_dependent_ones_high():
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(200, 3, generator=generator)
    assert float(normalised_hsic(x, torch.randn(200, 3, generator=generator))) < 0.1
    assert float(normalised_hsic(x, torch.tanh(x) + 0.01 * torch.randn(200, 3, generator=generator), "gaussian")) > 0.9


@pytest.mark.parametrize("kernel", ["linear", "gaussian"])
def test_the_loss_is_differentiable_and_lowered_by_its_gradient(kernel):
    generator = torch.Generator().manual_seed(3)
    target = torch.randn(16, 4, generator=generator)
    x = torch.randn(16, 4, generator=generator, requires_grad=True)
    loss = HsicAlignment(kernel)
    before = float(loss(x, target).detach())
    optimiser = torch.optim.SGD([x], lr=0.5)
    for _ in range(20):
        optimiser.zero_grad()
        value = loss(x, target)
        value.backward()
        assert x.grad is not None and bool(x.grad.isfinite().all())
        optimiser.step()
    assert float(loss(x, target).detach()) < before


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown kernel 'cosine'"):
        HsicAlignment("cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n >= 2 paired rows"):
        hsic(torch.zeros(3, 2), torch.zeros(4, 2))
