"""HSIC (Gretton et al. 2005) as an alignment loss, after Dual-Alignment Knowledge Retention (METHOD.md §6).

The biased empirical estimator HSIC(X, Y) = tr(K H L H) / (n − 1)², H = I − 11ᵀ/n, compares the Gram matrices
of two sets of n paired rows: it is large when rows that are alike in X are alike in Y. The loss maximises the
normalised dependence nHSIC(X, Y) = HSIC(X, Y) / sqrt(HSIC(X, X)·HSIC(Y, Y)) (CKA with a linear kernel), which
lies in [0, 1] and does not grow with the features' scale: loss = 1 − nHSIC.
"""
from __future__ import annotations

import torch
from torch import nn

from ..api.settings import HsicKernel as Kernel
# Below this, a Gram matrix is constant (every row alike): its dependence with anything is undefined.
_EPS = 1e-12


def gram_matrix(rows: torch.Tensor, kernel: Kernel) -> torch.Tensor:
    """K (n, n) of rows (n, d): linear ⟨a, b⟩, or gaussian exp(−‖a − b‖² / (2σ²)) with σ the median of the
    pairwise distances (the median heuristic; σ is detached so the bandwidth follows the data, not the loss)."""
    if kernel == "linear":
        return rows @ rows.T
    if kernel != "gaussian":
        raise ValueError(f"unknown kernel {kernel!r}; use linear or gaussian")
    squared = torch.cdist(rows, rows).square()
    with torch.no_grad():
        off_diagonal = squared[~torch.eye(rows.shape[0], dtype=torch.bool, device=rows.device)]
        # The median of squared distances is the square of the median distance (a monotone map keeps the median).
        sigma_squared = off_diagonal.median().clamp(min=_EPS)
    return torch.exp(-squared / (2 * sigma_squared))


def _centred(gram: torch.Tensor) -> torch.Tensor:
    """H K H without forming H: subtract row and column means, add back the total mean."""
    return gram - gram.mean(0, keepdim=True) - gram.mean(1, keepdim=True) + gram.mean()


def hsic(x: torch.Tensor, y: torch.Tensor, kernel: Kernel = "linear") -> torch.Tensor:
    """Biased HSIC estimate tr(K H L H)/(n − 1)² of paired rows x (n, d₁), y (n, d₂), n >= 2; float32."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"hsic needs n >= 2 paired rows, got x {tuple(x.shape)} and y {tuple(y.shape)}")
    n = x.shape[0]
    with torch.autocast(device_type=x.device.type, enabled=False):
        k, l_ = gram_matrix(x.float(), kernel), gram_matrix(y.float(), kernel)
        # tr(KHLH) = Σ (HKH) ⊙ L since H is symmetric and idempotent.
        return (_centred(k) * l_).sum() / (n - 1) ** 2


def normalised_hsic(x: torch.Tensor, y: torch.Tensor, kernel: Kernel = "linear") -> torch.Tensor:
    """nHSIC = HSIC(x, y)/sqrt(HSIC(x, x)·HSIC(y, y)) in [0, 1]; 0 when either side has no spread."""
    denominator = (hsic(x, x, kernel) * hsic(y, y, kernel)).clamp(min=0).sqrt()
    return hsic(x, y, kernel) / denominator.clamp(min=_EPS)


class HsicAlignment(nn.Module):
    """Alignment loss 1 − nHSIC(x, y) of paired feature rows (Dual-Alignment's CNA and CRA, METHOD.md §6).

    Args:
        kernel: ``linear`` (CKA; invariant to rotation and isotropic scaling of either side) [default] or
            ``gaussian`` (median-distance bandwidth) (dual_alignment setting ``kernel``).
    Shapes: x (n, d₁), y (n, d₂), row i of both from the same voxel or class -> scalar in [0, 1].
    """

    def __init__(self, kernel: Kernel = "linear") -> None:
        super().__init__()
        gram_matrix(torch.zeros(2, 1), kernel)  # fails now, naming the kernel, rather than at the first iteration
        self.kernel = kernel

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 - normalised_hsic(x, y, self.kernel)
