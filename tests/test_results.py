"""diffcps_ray.results: metric lookup and the sentence that states a score and its noise."""

from __future__ import annotations

import pytest

from diffcps_ray.results import metric_value, score_summary


def test_metric_value_flat_nested_and_absent() -> None:
    key = "evaluation/normalized_score"
    assert metric_value({key: 3.0}, key) == 3.0
    assert metric_value({"evaluation": {"normalized_score": 4.0}}, key) == 4.0
    assert metric_value({"evaluation": 1.0}, key) is None


def test_score_summary_against_the_behaviour() -> None:
    # scores 66 and 74: sample std 5.657, standard error 4.0
    text = score_summary([66.0, 74.0], [5.0, 4.0], episodes=50, behaviour=63.0)
    assert text == (
        "70.0 +- 4.0 (mean +- standard error over 2 seeds, 50 evaluation episodes each; "
        "evaluation noise +-4.5 per seed), 7.0 points above the data's behaviour policy "
        "(63.0): 1.8 standard errors"
    )


def test_score_summary_one_seed_uses_its_evaluation_noise() -> None:
    text = score_summary([60.0], [4.0], behaviour=62.0)
    assert text == (
        "60.0 (1 seed; evaluation noise +-4.0 per seed), 2.0 points below the data's "
        "behaviour policy (62.0): 0.5 standard errors"
    )
    assert score_summary([60.0]) == "60.0 (1 seed)"


def test_close_seeds_are_not_more_certain_than_their_evaluations() -> None:
    # Seeds 93.3 and 93.9: standard error 0.3, but each carries +-2.4 of evaluation noise,
    # so the mean's is at least 2.4 / sqrt(2) = 1.7: 30.6 / 1.7 = 18.0 standard errors.
    text = score_summary([93.3, 93.9], [2.4, 2.4], episodes=50, behaviour=63.0)
    assert text.endswith("30.6 points above the data's behaviour policy (63.0): 18.0 standard "
                         "errors")


@pytest.mark.parametrize("scores", [[50.0, 50.0], [50.0]])
def test_score_summary_without_a_spread_states_no_ratio(scores: list[float]) -> None:
    text = score_summary(scores, behaviour=40.0)
    assert "10.0 points above" in text and "standard errors" not in text
    assert "nan" not in text and "inf" not in text
