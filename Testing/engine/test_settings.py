"""Strategy settings declared once (ciss_engine/api/settings.py, issue 18): one syntax per command, routed to
the loss it names, errors that say what is valid, the docs page generated from the declarations, and records
of older bundles read back. Routing is checked on the built loss objects, not only on dicts."""
from __future__ import annotations

import json
import re

import pytest
from ciss_test_helpers import REPO_ROOT

from ciss_engine.api.settings import (
    STRATEGY_SETTINGS, DualAlignmentSettings, MibSettings, PcddSettings, StrategySettings, parse_settings_or_raise, recorded_settings, settings_document, settings_record,
    settings_table, specs_of,
)
from ciss_engine.cli import build_parser
from ciss_engine.commands.learn import setting_texts_or_raise
from ciss_engine.commands.protocol import settings_by_strategy_or_raise
from ciss_engine.errors import InputError
from ciss_engine.prototypes import FeaturePrototypes
from ciss_engine.strategies import STRATEGIES, Strategy
from ciss_engine.strategies.base import StepContext

LEARN = ["learn", "-b", "bundle", "--organ", "pancreas", "-i", "ct.nii.gz", "-l", "label.nii.gz"]


def _built(strategy: str, settings: StrategySettings) -> Strategy:
    """The strategy with its losses as a step builds them (2 old organs, 2 new, 4 feature channels)."""
    return STRATEGIES[strategy](StepContext(2, 2, FeaturePrototypes.empty(3, 4), FeaturePrototypes.empty(5, 4)), settings)


def _temperatures(strategy: Strategy) -> tuple[float, float]:
    return strategy._orcd.temperature, strategy._crcd.temperature


def test_the_docs_page_is_generated_from_the_declarations():
    assert (REPO_ROOT / "docs" / "settings.md").read_text(encoding="utf-8") == settings_document(), (
        "regenerate it: .venv/bin/python -c \"from ciss_engine.api.settings import settings_document; "
        "print(settings_document(), end='')\" > docs/settings.md")


def test_every_strategy_declares_its_settings_and_every_default_reads_back():
    assert list(STRATEGY_SETTINGS) == list(STRATEGIES)
    for strategy, settings_type in STRATEGY_SETTINGS.items():
        for spec in specs_of(settings_type):
            assert spec.why and spec.parse_or_raise(str(spec.default), strategy) == spec.default, f"{strategy}.{spec.name}"


def test_every_setting_a_loss_docstring_names_is_a_pcdd_setting():
    """Regression: the loss docstrings advertised ``crcd.mib_scale`` and ``dapd.background``, which nothing accepted."""
    texts = [path.read_text(encoding="utf-8") for path in (REPO_ROOT / "ciss_engine" / "losses").glob("*.py")]
    advertised = {name for text in texts for name in re.findall(r"PCDD setting\s+``(\w+)``", text)}
    assert {"orcd_temperature", "crcd_temperature", "crcd_mib_scale", "dapd_background"} <= advertised
    assert advertised <= {spec.name for spec in specs_of(PcddSettings)}
    assert [m for text in texts for m in re.findall(r"``(?:orcd|crcd|dapd)\.\w+``", text)] == []


def test_learn_takes_plain_names_into_the_losses_they_name():
    args = build_parser().parse_args([*LEARN, "--setting", "orcd_temperature=0.1", "--setting", "crcd_mib_scale=false"])
    strategy = _built(args.strategy, parse_settings_or_raise(args.strategy, setting_texts_or_raise(args.setting)))
    assert _temperatures(strategy) == (0.1, 1.0) and strategy._crcd.mib_scale is False


@pytest.mark.parametrize(("text", "hint"), [
    ("orcd.temperature=0.1", "did you mean orcd_temperature?"),  # was: both temperatures, silently
    ("crcd.mib_scale=false", "did you mean crcd_mib_scale?"),  # was: refused as an unknown mib_scale
    ("pcdd.lambda_orcd=5", "did you mean lambda_orcd?"),  # the protocol's syntax
    ("temperature=0.1", "temperature is now orcd_temperature and crcd_temperature"),
    ("new_class_dice_batch=true", "new_class_dice_batch is now new_class_dice_reduction"),
])
def test_learn_refuses_other_syntaxes_naming_the_setting_meant(text, hint):
    with pytest.raises(InputError) as refused:
        parse_settings_or_raise("pcdd", setting_texts_or_raise([text]))
    assert hint in refused.value.hint


def test_an_unknown_name_lists_the_strategys_settings_and_a_bad_value_says_what_it_takes():
    with pytest.raises(InputError) as unknown:
        parse_settings_or_raise("mib", {"lambda_orcd": "1"})
    assert unknown.value.message == "unknown setting 'lambda_orcd' of strategy mib"
    assert "settings of mib: new_class_dice, new_class_ce, new_class_lr_scale, new_class_dice_reduction, background_share, background_in_body, new_organ_weight, teacher, lambda_kd" in unknown.value.hint
    for name, text, takes in (("summand", "per_organ", "one of channel_kl, mib, agreement"), ("calibrated", "maybe", "true or false"),
                              ("lambda_ll", "x", "a number or none")):
        with pytest.raises(InputError) as bad:
            parse_settings_or_raise("pcdd", {name: text})
        assert bad.value.hint == f"{name} takes {takes}"


def test_protocol_routes_each_setting_to_the_strategy_it_names():
    args = build_parser().parse_args(
        ["protocol", "--data", "phantom", "-o", "out", "--setting", "pcdd.orcd_temperature=0.1", "--setting", "uniform.crcd_temperature=0.3"])
    settings = settings_by_strategy_or_raise(args.setting)
    assert settings == {"pcdd": {"orcd_temperature": "0.1"}, "uniform": {"crcd_temperature": "0.3"}}
    assert _temperatures(_built("pcdd", parse_settings_or_raise("pcdd", settings["pcdd"]))) == (0.1, 1.0)
    assert _temperatures(_built("uniform", parse_settings_or_raise("uniform", settings["uniform"]))) == (1.0, 0.3)
    with pytest.raises(InputError, match="unknown setting 'lambda_kd' of strategy pcdd"):
        settings_by_strategy_or_raise([("pcdd", "lambda_kd", "3")])


@pytest.mark.parametrize(("argv", "strategy"), [(["--list-settings", "mib"], "mib"), (["--strategy", "lwf", "--list-settings"], "lwf")])
def test_list_settings_prints_the_strategys_table_without_the_required_arguments(argv, strategy, capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["learn", *argv])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == settings_table(strategy)


@pytest.mark.parametrize("weight", ["0", "-2"])
def test_a_new_organ_weight_that_is_not_positive_is_refused(weight):
    with pytest.raises(InputError, match="new_organ_weight") as refused:
        parse_settings_or_raise("pcdd", {"new_organ_weight": weight})
    assert "positive number" in refused.value.hint


def test_a_step_recorded_before_the_split_reads_its_temperature_into_both_losses():
    """A PCDD record from before issue 13: one ``temperature``, the removed ``crcd_weighting``, no summand or affinity space."""
    record = {"name": "pcdd", "new_class_dice": 1.0, "lambda_orcd": 1.0, "lambda_crcd": 10.0, "lambda_ll": None, "lambda_lg": None,
              "temperature": 0.3, "include_background": True, "calibrated": True, "crcd_weighting": "per_class", "crcd_mib_scale": True,
              "dapd_background": "mean_of_current_region", "supervise_pseudo_labels": False}
    settings = recorded_settings(record)
    assert _temperatures(_built("pcdd", settings)) == (0.3, 0.3)
    assert (settings.summand, settings.affinity_features, settings.crcd_background, settings.teacher) == ("mib", "post_activation", "stored", "online")
    assert settings.orcd_normalisation == "region"  # ORCD was a mean over the old region before the setting existed
    assert (settings.new_class_ce, settings.new_class_lr_scale) == (0.0, 1.0)  # nor did the new organs have a CE or rate of their own
    assert settings.new_organ_weight == 1.0  # and the sampler drew new and old organs alike
    assert settings.new_class_dice_reduction == "per_patch"  # and the new organs' Dice was taken per patch


def test_a_domain_step_recorded_before_the_decoder_alignment_reads_as_the_published_method():
    """A dual_alignment record from before ``cna_features``, ``lambda_kd`` and ``kd_voxels``: it ran CNA on the
    bottleneck, without KD (and KD, once added, on every voxel)."""
    record = {"name": "dual_alignment", "new_class_dice": 1.0, "new_class_ce": 0.0, "kernel": "linear", "lambda_cna": 1.0, "lambda_cra": 1.0,
              "embedding_size": 64, "buffer_per_class": 200, "aligned_rows": 256}
    settings = recorded_settings(record)
    assert (settings.cna_features, settings.lambda_kd, settings.kd_voxels) == ("bottleneck", 0.0, "all")
    assert (DualAlignmentSettings().cna_features, DualAlignmentSettings().lambda_kd, DualAlignmentSettings().kd_voxels) == ("decoder", 10.0, "teacher_correct")


@pytest.mark.parametrize(("pooled", "reduction"), [(True, "batch"), (False, "per_patch")])
def test_a_step_recorded_with_the_dice_pooling_flag_reads_as_its_reduction(pooled, reduction):
    """Records of the release that had the true/false ``new_class_dice_batch`` before the three-way setting."""
    record = settings_record("mib", MibSettings()) | {"new_class_dice_batch": pooled}
    del record["new_class_dice_reduction"]
    assert recorded_settings(record).new_class_dice_reduction == reduction


def test_a_step_record_reads_back_as_the_settings_it_ran():
    for strategy in STRATEGY_SETTINGS:
        settings = parse_settings_or_raise(strategy, {"new_class_dice": "0.5"})
        record = json.loads(json.dumps(settings_record(strategy, settings)))
        assert record["name"] == strategy and recorded_settings(record) == settings
    pcdd = parse_settings_or_raise("pcdd", {"orcd_temperature": "0.2", "lambda_ll": "none", "summand": "agreement"})
    assert recorded_settings(settings_record("pcdd", pcdd)) == pcdd
