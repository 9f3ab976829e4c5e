"""A project's own suite: its attack, undefended and under its defense and a shipped one."""

from pytest_robustness import attack_cases, defense_cases


@attack_cases("random_sign", [dict(eps=0.1), dict(eps=0.3)])
def test_random_sign(robustness, architecture, params):
    result = robustness.attack("random_sign", **params)
    robustness.check(result, clean_accuracy=0.5)


@defense_cases(["feature_squeezing", "jpeg_compression"])
@attack_cases("random_sign", [dict(eps=0.3)])
def test_random_sign_defended(robustness, architecture, params, defense):
    result = robustness.attack("random_sign", **params)
    defended = robustness.defend(result, defense.name, defense.threat_model, **defense)
    robustness.check(defended, clean_accuracy=0.5)
