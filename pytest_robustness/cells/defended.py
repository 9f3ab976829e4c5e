"""Defended cells: the ``robustness`` fixture's ``defend``, an attack's result under a defense for one
threat model. A mixin of ``evaluation.Robustness`` (like ``transfer_cells.TransferCell``): it uses the
cell's crafting, scoring memo and logging, and imports nothing from that module."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..attacks import get_attack
from ..attacks.base import seed_everything
from ..data.datasets import content_digest
from ..defenses import randomised
from ..defenses.catalog import bpda, check_threat_model, get_defense
from ..metrics import statistics
from ..models.predictors import LazyClassifier, unwrap
from .result import AttackResult, Deferred, grid_rows
from .scoring import score


class DefendedCell:
    """``defend`` and the defended result's logging; ``_defend`` is shared with the baseline look-up."""

    def defend(self, result: AttackResult, defense: str, threat_model: str = "oblivious", **params: Any) -> AttackResult:
        """``result``'s attack under ``defense``, for one threat model; logged beside ``result``.

        ``oblivious``: ``result``'s own examples (not regenerated) through the
        defended classifier. ``adaptive``: the same attack and parameters crafted
        against the defended classifier (BPDA through preprocessors; for ``pgd``,
        against the adversarially trained model). ``defended_accuracy`` is the
        defended model's accuracy on its examples; ``accuracy_gain`` is that minus
        ``result``'s adversarial accuracy (on the very same examples when oblivious).
        """
        resolved = get_defense(defense).resolve(params)
        check_threat_model(threat_model)
        defended = self._defend(result, defense, threat_model, resolved)
        self.log_defended(result, defended)
        return defended

    def _defend(self, result: AttackResult, defense: str, threat_model: str, resolved: dict[str, Any],
                base_recipe: str = "") -> AttackResult:
        """``defend`` without logging; ``base_recipe`` picks the defended model's slot (the baseline's too)."""
        spec = get_defense(defense)
        attack = get_attack(result.attack)
        attack_params = attack.resolve({k: v for k, v in result.params.items() if k in attack.schema})
        recipe = spec.training_recipe(resolved) or base_recipe  # adversarial training, apply_fit: own model
        key = spec.key(resolved) if spec.preprocessor is not None else ""
        # Built on first use: a cached result needs neither the model nor the defense.
        draws = randomised.eot_samples(resolved) if key else 1
        classifier = self.session.lazy_classifier(
            self.architecture, recipe, defences=(lambda: (bpda(spec.preprocessor(resolved)),)) if key else (),
            defence_key=key)
        if draws > 1:  # a randomised defense: adaptive gradients by Expectation over Transformation
            classifier = LazyClassifier(lambda plain=classifier: randomised.with_eot(unwrap(plain), draws))
        if threat_model == "oblivious":
            seed_everything(self.seed)
            with self.timed("score"):
                defended = score(result.attack, result.params, self.registered_model(recipe).uri, result.x_clean,
                                 result.y_true, result.x_adv, classifier, result.run, result.deployed,
                                 result.params.get("patch_target"), memo=self._score_memo(recipe, key))
            defended.crafted_on = result.crafted_on
            if result.deployed is not None:
                with self.timed("score"):
                    self._add_control(defended, attack, result.params, classifier, recipe, key)
        else:
            compiled_form = spec.compiled(resolved) if key and spec.compiled is not None else None
            attack_model = (lambda: self.session.defended_model(self.architecture, recipe, key, compiled_form)
                            ) if compiled_form is not None else None
            defended = self._craft(attack, attack_params, recipe=recipe, classifier=classifier if key else None,
                                   defence_key=key, attack_model=attack_model)
        rows = defended.x_adv[grid_rows(defended)]
        if spec.preprocessor is None or not resolved["apply_predict"]:
            defended.defended_inputs = rows
        else:
            def view(seed=self.seed) -> np.ndarray:
                seed_everything(seed)  # randomised defenses (Gaussian noise) draw reproducibly
                return np.asarray(spec.preprocessor(resolved)(rows)[0])

            defended.defended_inputs = Deferred(("defended_view", key, self.seed, content_digest(rows)),
                                                view)
        defended.architecture, defended.defense, defended.threat_model = self.architecture, defense, threat_model
        defended.defense_params = resolved
        defended.undefended = result
        accuracy, spread = defended.metrics["adversarial_accuracy"], {}
        if draws > 1:  # defended accuracy of a randomised defense: the mean over prediction draws
            def over_draws() -> dict[str, np.ndarray]:
                seed_everything(self.seed)
                return {"accuracy": randomised.accuracy_over_draws(classifier, defended.x_adv,
                                                                   defended.y_adversarial, draws)}

            per_draw = self._score_memo(recipe, key)(
                ("accuracy_over_draws", content_digest(defended.x_adv), content_digest(defended.y_adversarial),
                 draws), over_draws)["accuracy"]
            accuracy, spread = float(per_draw.mean()), {"defended_accuracy_std": float(per_draw.std())}
        defended.metrics.update({
            "defended_accuracy": accuracy, **spread,
            "accuracy_gain": accuracy - result.metrics["adversarial_accuracy"],
            "clean_accuracy_gain": defended.metrics["clean_accuracy"] - result.metrics["clean_accuracy"],
        })
        defended.metrics.update(statistics.intervals({"defended_accuracy": accuracy}, defended.sample_sizes))
        return defended

    def log_defended(self, undefended: AttackResult, defended: AttackResult) -> None:
        self.log_params({"defense": defended.defense, "threat_model": defended.threat_model,
                         **{f"{defended.defense}.{k}": v for k, v in defended.defense_params.items()}})
        self.session.tracker.set_tags(self.ensure_run(), {"robustness.defense": defended.defense,
                                                          "robustness.threat_model": defended.threat_model})
        self.log_result(defended, prefix="defended_", undefended=undefended)
