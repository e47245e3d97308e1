"""The domain-incremental protocol: one model, the same organs, sites (scanners) in sequence.

For each seed: a base bundle on site 1's training cases; then every domain strategy adapts a copy of it to
site 2, then site 3, … (``ciss adapt`` with labels of every organ), and after each step every site's held-out
cases are scored. The table shows what a strategy keeps of the earlier sites while it learns the newest one.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .api.presets import STANDARD_ITERATIONS
from .atomic import write_json_atomic, write_text_atomic
from .bundle import Bundle
from .cancellation import CancelToken
from .events import EventSink
from .preprocessing import PreprocessingConfig
from .protocol import PAPER_ORGANS, Case, copy_bundle, organs_of, run_settings, scored_entry, step_labels, train_from_scratch
from .scanner_sites import ScannerSite, write_site_cases
from .training.adapt import AdaptRequest, adapt_step
from .training.loop_config import ADAPT_APPEARANCE_REPLAY, ADAPT_ORGAN_CONTRAST, PROTOCOL_ORGAN_CONTRAST, STEP_LEARNING_RATE, LoopConfig

@dataclasses.dataclass(frozen=True)
class DomainProtocolRequest:
    strategies: Sequence[str]
    sites: Sequence[ScannerSite]
    train: Sequence[Path]  # case folders of the cohort, as site 1 shows them
    test: Sequence[Path]
    output: Path
    organs: Sequence[int] = (1, 2, 3, 4)  # seg8 values, the same at every site
    seeds: Sequence[int] = (0,)
    base_iterations: int = STANDARD_ITERATIONS
    step_iterations: int = STANDARD_ITERATIONS
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    init_filters: int = 16
    batch_size: int = 2
    step_learning_rate: float = STEP_LEARNING_RATE
    strategy_settings: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    postprocess: bool = True  # as ciss segment writes it (postprocessing.py)
    organ_contrast: float = PROTOCOL_ORGAN_CONTRAST  # of the site-1 base
    step_organ_contrast: float = ADAPT_ORGAN_CONTRAST  # of each adapt step, as ciss adapt's
    step_appearance_replay: float = ADAPT_APPEARANCE_REPLAY  # of each adapt step, as ciss adapt's


def _site_cases(request: DomainProtocolRequest, split: str, cases: Sequence[Path]) -> dict[str, list[Case]]:
    """Every site's cases of a split (written once under output/data), as protocol Cases."""
    by_site = {}
    for site in request.sites:
        folder = request.output / "data" / site.name / split
        written = sorted(folder.glob("case_*")) if folder.is_dir() else []
        if len(written) != len(cases):
            written = write_site_cases(cases, site, folder, seed=0 if split == "train" else 1)
        by_site[site.name] = [Case(p / "image.nii.gz", p / "label_seg8.nii.gz") for p in written]
    return by_site


def _site_dsc(bundle: Path, test: dict[str, list[Case]], request: DomainProtocolRequest, device: torch.device, version: str | None = None) -> dict[str, float | None]:
    """Mean DSC over the request's organs on each site's held-out cases, of the current version or ``version``."""
    return {site: scored_entry(bundle, cases, [request.organs], device, version, postprocess=request.postprocess)["all"] for site, cases in test.items()}


def run_domain_protocol(request: DomainProtocolRequest, *, device: torch.device, sink: EventSink, cancel: CancelToken) -> dict[str, Any]:
    train, test = _site_cases(request, "train", request.train), _site_cases(request, "test", request.test)
    names = [site.name for site in request.sites]
    results: dict[str, Any] = {"protocol": "domain", "sites": names, "organs": [PAPER_ORGANS[v - 1] for v in request.organs],
                               "settings": run_settings(request), "seeds": {}}
    quiet = EventSink("quiet")
    for seed in request.seeds:
        root = request.output / f"seed_{seed}"
        base = root / "base"
        if not (base / "bundle.json").exists():
            sink.log(f"seed {seed}: base model on {names[0]}")
            train_from_scratch(train[names[0]], request.organs, root / "labels" / names[0], base, request.base_iterations, seed,
                               preprocessing=request.preprocessing, init_filters=request.init_filters, batch_size=request.batch_size, device=device, cancel=cancel,
                               organ_contrast=request.organ_contrast)
        seed_results: dict[str, Any] = {"base": [{"after": names[0], "dsc": _site_dsc(base, test, request, device)}]}
        for strategy in request.strategies:
            bundle = root / strategy
            if not (bundle / "bundle.json").exists():
                copy_bundle(base, bundle)
            rows = []
            for step, site in enumerate(names[1:], start=1):
                if len(Bundle.open_or_raise(bundle).versions()) <= step:  # resumes site by site
                    pairs = step_labels(train[site], request.organs, root / "labels" / site)
                    sink.log(f"seed {seed}, {strategy}: adapting to {site}")
                    adapt_step(AdaptRequest(
                        bundle=bundle, images=[p[0] for p in pairs], labels=[p[1] for p in pairs],
                        loop=LoopConfig(iterations=request.step_iterations, learning_rate=request.step_learning_rate),
                        organs=[(name, value) for name, value, _ in organs_of(request.organs)], strategy=strategy,
                        strategy_settings=request.strategy_settings.get(strategy, {}), batch_size=request.batch_size, seed=seed, accept_forgetting=True,
                        organ_contrast=request.step_organ_contrast, appearance_replay=request.step_appearance_replay,
                    ), device=device, sink=quiet, cancel=cancel)
                version = Bundle.open_or_raise(bundle).versions()[step]
                rows.append({"after": site, "version": version, "dsc": _site_dsc(bundle, test, request, device, version)})
            seed_results[strategy] = rows
        results["seeds"][str(seed)] = seed_results
        write_json_atomic(request.output / "protocol.json", results)
    write_text_atomic(request.output / "protocol.md", domain_markdown(results))
    return results


def domain_markdown(results: dict[str, Any]) -> str:
    """Per strategy and step, each site's mean DSC (mean ± std over the seeds)."""
    sites = results["sites"]
    seeds = list(results["seeds"].values())
    lines = [f"Domain-incremental protocol: {' → '.join(sites)}; organs {', '.join(results['organs'])}; mean DSC on each site's held-out "
             f"cases, mean ± std over {len(seeds)} seed(s).", "", "| model | after | " + " | ".join(sites) + " |", "|---|---|" + "---:|" * len(sites)]
    models = [name for name in seeds[0] if all(name in s for s in seeds)]
    for model in models:
        for index, row in enumerate(seeds[0][model]):
            cells = []
            for site in sites:
                values = [s[model][index]["dsc"][site] for s in seeds if index < len(s[model]) and s[model][index]["dsc"].get(site) is not None]
                cells.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "–")
            lines.append(f"| {model} | {row['after']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
