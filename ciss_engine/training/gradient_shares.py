"""Each loss term's share of the gradient on the shared parameters: whether a term acts at all.

A term's value says little about its pull on the network (DAPD measured 0.2 % of the loss in a real step);
the norm of its gradient on the parameters every class shares (everything but the classifier) does.
Shares are ‖∇θ L_k‖ / Σ_j ‖∇θ L_j‖, one extra backward pass per term, so they are taken every few
iterations only.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from ..api.events import GradientShares
from ..events import EventSink

# Measured every this many iterations of a step (and at its first); the mean of the measurements is recorded. Each
# measurement costs a backward pass per term, about 2.3 iterations of a pcdd step: every 25 iterations about a tenth
# of the step (benchmarks/RESULTS.md (bd)). A 400-iteration step still measures 4 times, a 1000-iteration step 10.
GRADIENT_SHARE_EVERY = 100


def shared_parameters(network: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters that every class uses: the whole network except the per-class classifier."""
    return [p for name, p in network.named_parameters() if p.requires_grad and not name.startswith("classifier.")]


def gradient_shares(terms: dict[str, torch.Tensor], parameters: Iterable[torch.nn.Parameter]) -> dict[str, float]:
    """{term: share of the summed gradient norms}; a term that does not reach the parameters has share 0."""
    parameters = list(parameters)
    norms = {}
    for name, term in terms.items():
        if not term.requires_grad:  # e.g. a term that is 0 on this batch without a graph
            norms[name] = 0.0
            continue
        gradients = torch.autograd.grad(term, parameters, retain_graph=True, allow_unused=True)
        squared = sum(float(g.detach().float().pow(2).sum()) for g in gradients if g is not None)
        norms[name] = squared ** 0.5
    total = sum(norms.values())
    return {name: (norm / total if total > 0 else 0.0) for name, norm in norms.items()}


class ShareAverage:
    """Running mean of the shares measured over a step, for its history record."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self.measurements = 0

    def add(self, shares: dict[str, float]) -> None:
        for name, share in shares.items():
            self._sums[name] = self._sums.get(name, 0.0) + share
        self.measurements += 1

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """For the step's checkpoint, so a resumed step records the mean over all its measurements."""
        return {"share_measurements": torch.tensor(self.measurements), **{f"share_{n}": torch.tensor(v, dtype=torch.float64) for n, v in self._sums.items()}}

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self.measurements = int(tensors.get("share_measurements", torch.tensor(0)))
        self._sums = {name.removeprefix("share_"): float(value) for name, value in tensors.items()
                      if name.startswith("share_") and name != "share_measurements"}

    def mean(self) -> dict[str, float]:
        return {name: round(total / max(self.measurements, 1), 4) for name, total in self._sums.items()}


class ShareRecorder:
    """What a step does with the shares: measures them every ``GRADIENT_SHARE_EVERY`` iterations on the network's
    shared parameters, emits each measurement as an event, and keeps their mean (checkpointed with the step)."""

    def __init__(self, network: torch.nn.Module, sink: EventSink, stage: str) -> None:
        self.parameters = shared_parameters(network)
        self.sink, self.stage = sink, stage
        self.average = ShareAverage()

    def observe(self, terms: dict[str, torch.Tensor], iteration: int) -> None:
        if iteration % GRADIENT_SHARE_EVERY:
            return
        measured = gradient_shares(terms, self.parameters)
        self.average.add(measured)
        self.sink.emit(GradientShares(stage=self.stage, iteration=iteration, shares={k: round(v, 4) for k, v in measured.items()}))
