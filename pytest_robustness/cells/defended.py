"""Defended cells: an attack's result under a defense, for one threat model (the ``robustness``
fixture's ``defend``), built on the cell's ``Crafter`` and logged through its ``CellRun``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..attacks import get_attack
from ..attacks.base import seed_everything
from ..data.datasets import content_digest
from ..defenses import randomised
from ..defenses.catalog import get_defense
from ..defenses.defense import bpda, check_threat_model
from ..metrics import statistics
from ..models.predictors import LazyClassifier, unwrap
from ..models.slot import ModelSlot
from .cell_run import CellRun
from . import streamed
from .crafting import Crafter
from .result import AttackResult, Deferred, grid_rows
from .scoring import score


class Defender:
    """Puts a defense in front of the cell's model and measures the attack against it."""

    def __init__(self, crafter: Crafter, cell_run: CellRun):
        self.crafter = crafter
        self.cell_run = cell_run
        self.session = crafter.session

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
        streamed.require_every_example(result, f"defense {defense}")
        defended = self.defended(result, defense, threat_model, resolved)
        self.log(result, defended)
        return defended

    def defended_slot(self, spec, resolved: dict[str, Any], base_recipe: str = "") -> ModelSlot:
        """The slot of the defended model: its own recipe (adversarial training, ``apply_fit``), else
        ``base_recipe``'s model behind the preprocessor (BPDA; EoT for a randomised one), with its
        compiled form where the defense has one. Classifiers are built on first use."""
        architecture = self.crafter.architecture
        recipe = spec.training_recipe(resolved) or base_recipe
        key = spec.key(resolved) if spec.preprocessor is not None else ""
        draws = randomised.eot_samples(resolved) if key else 1
        classifier = self.session.lazy_classifier(
            architecture, recipe, defenses=(lambda: (bpda(spec.preprocessor(resolved)),)) if key else (),
            defense_key=key)
        if draws > 1:  # a randomised defense: adaptive gradients by Expectation over Transformation
            classifier = LazyClassifier(lambda plain=classifier: randomised.with_eot(unwrap(plain), draws))
        compiled_form = spec.compiled(resolved) if key and spec.compiled is not None else None
        attack_model = (lambda: self.session.defended_model(architecture, recipe, key, compiled_form)
                        ) if compiled_form is not None else None
        return ModelSlot(architecture, recipe, key, classifier, attack_model)

    def defended(self, result: AttackResult, defense: str, threat_model: str, resolved: dict[str, Any],
                 base_recipe: str = "") -> AttackResult:
        """``defend`` without logging; ``base_recipe`` picks the defended model's slot (the baseline's too)."""
        spec = get_defense(defense)
        attack = get_attack(result.attack)
        attack_params = attack.resolve({k: v for k, v in result.params.items() if k in attack.schema})
        slot = self.defended_slot(spec, resolved, base_recipe)
        seed = self.session.settings.seed
        timer = self.crafter.timer
        if threat_model == "oblivious":
            seed_everything(seed)
            scorer = self.crafter.scorer(slot)
            with timer.timed("score"):
                defended = score(result, scorer)
            defended.crafted_on = result.crafted_on
            if result.deployed is not None:
                with timer.timed("score"):
                    self.crafter.add_control(defended, attack, scorer)
        else:  # a training defense has no defended classifier: its slot is its own model, crafted on directly
            crafted_on = slot if slot.defense_key else ModelSlot(slot.architecture, slot.recipe)
            defended = self.crafter.craft(attack, attack_params, crafted_on)
        rows = defended.x_adv[grid_rows(defended)]
        if spec.preprocessor is None or not resolved["apply_predict"]:
            defended.defended_inputs = rows
        else:
            def view(seed=seed) -> np.ndarray:
                seed_everything(seed)  # randomised defenses (Gaussian noise) draw reproducibly
                return np.asarray(spec.preprocessor(resolved)(rows)[0])

            defended.defended_inputs = Deferred(("defended_view", slot.defense_key, seed, content_digest(rows)), view)
        defended.architecture, defended.defense, defended.threat_model = slot.architecture, defense, threat_model
        defended.defense_params = resolved
        defended.undefended = result
        accuracy, spread = defended.metrics["adversarial_accuracy"], {}
        draws = randomised.eot_samples(resolved) if slot.defense_key else 1
        if draws > 1:  # defended accuracy of a randomised defense: the mean over prediction draws
            def over_draws() -> dict[str, np.ndarray]:
                seed_everything(seed)
                return {"accuracy": randomised.accuracy_over_draws(slot.classifier, defended.x_adv,
                                                                   defended.y_adversarial, draws)}

            per_draw = self.session.score_memo(slot)(
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

    def log(self, undefended: AttackResult, defended: AttackResult) -> None:
        self.cell_run.log_params({"defense": defended.defense, "threat_model": defended.threat_model,
                                  **{f"{defended.defense}.{k}": v for k, v in defended.defense_params.items()}})
        self.cell_run.set_tags({"robustness.defense": defended.defense,
                                "robustness.threat_model": defended.threat_model})
        self.cell_run.log_result(defended, prefix="defended_", undefended=undefended)
