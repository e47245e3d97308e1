import argparse

import pytest

from ciss_engine.commands.arguments import float_triple, int_triple, multiple_of_8, positive_int, share_below_one, unit_fraction


def test_triples_take_one_value_or_three():
    assert int_triple("64") == (64, 64, 64) and int_triple("32,48,64") == (32, 48, 64)
    assert float_triple("2.5,2.5,3") == (2.5, 2.5, 3.0)


@pytest.mark.parametrize("validator, text, message", [
    (int_triple, "30", "multiples of 8"), (int_triple, "8,8", "X,Y,Z"), (float_triple, "-1", "positive mm"),
    (positive_int, "0", "positive integer"), (multiple_of_8, "12", "multiple of 8"), (unit_fraction, "1.5", "between 0 and 1"),
    (share_below_one, "1", "not including, 1"),
])
def test_validators_say_what_is_allowed(validator, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        validator(text)


def test_protocol_strategies_may_be_empty_for_the_base_models_only():
    from ciss_engine.commands.protocol import strategy_names

    assert strategy_names("") == [] and strategy_names("PCDD,uniform,pcdd") == ["pcdd", "uniform"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown strategy 'magic'"):
        strategy_names("pcdd,magic")
