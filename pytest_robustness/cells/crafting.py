"""Crafting and judging for one architecture: the attack run on a model slot (memo, cache), its
deployment, its scoring, and a patch's control. Every kind of cell (plain, defended, transfer,
baseline) builds its numbers through these three calls: ``craft``, ``judge`` and ``scorer``.
"""

from __future__ import annotations

from typing import Any

from ..attacks.base import seed_everything
from ..metrics import statistics
from ..models.slot import ModelSlot
from . import ensemble, patch_control, per_class, streamed, targets
from .phases import PhaseTimer
from .result import AttackResult, Examples
from .scoring import Scorer, score


class Crafter:
    """Crafts examples on, and scores them with, the model slots of one ``architecture``."""

    def __init__(self, session, architecture: str, timer: PhaseTimer):
        self.session = session
        self.architecture = architecture
        self.timer = timer

    def slot(self, recipe: str = "") -> ModelSlot:
        """The undefended slot of ``recipe``'s model ("" plain, a training recipe, or ``BASELINE``)."""
        return ModelSlot(self.architecture, recipe)

    def scorer(self, slot: ModelSlot) -> Scorer:
        return Scorer(self.session.model(slot.architecture, slot.recipe).uri, self.session.predictor(slot),
                      self.session.score_memo(slot))

    def eval_set(self):
        return self.session.eval_set(self.architecture)

    def craft(self, spec, resolved: dict[str, Any], slot: ModelSlot | None = None, *,
              max_samples: int | None = None, stream: bool = False) -> AttackResult:
        """Examples of attack ``spec`` crafted on ``slot`` (default: the plain model), memoised and cached,
        then deployed (patches), and scored by the same slot. ``max_samples`` caps the attacked images for an
        attack too slow for the whole set (an explicit ``--samples`` wins). ``stream``: the caller needs the
        metrics only (not every example), so a streamed session may run it batch by batch (``streamed``)."""
        slot = slot or self.slot()
        if stream and streamed.streams(self.session, spec, slot, max_samples):
            result = streamed.craft_streamed(self.session, spec, resolved, slot, self.scorer(slot), self.architecture,
                                             self.timer)
            return self._finish(result, slot, spec, None, None)
        x, y = self.eval_set()
        if max_samples and not self.session.settings.samples:
            x, y = x[:max_samples], y[:max_samples]
        source = self.session.dataset.x_train if spec.generate_on == "train" else x
        with self.timer.timed("craft_adaptive" if slot.defense_key or slot.recipe else "craft"):
            run = self.session.attack_run(slot, spec.name, resolved, source)
            deployed = self.session.deployment(run, x, resolved) if spec.deploy is not None else None
        params = {**resolved, **run.extra_params}
        seed_everything(self.session.settings.seed)  # randomised defenses (Gaussian noise) predict reproducibly
        scorer = self.scorer(slot)
        examples = Examples(spec.name, params, "", x, y, deployed.x if deployed is not None else run.x_adv,
                            deployed, run=run)
        with self.timer.timed("score"):
            result = score(examples, scorer)
        return self._finish(result, slot, spec, deployed, scorer)

    def _finish(self, result: AttackResult, slot: ModelSlot, spec, deployed, scorer: Scorer | None) -> AttackResult:
        """The metrics every crafted cell adds to its score: per image worst case, per class, targets, control."""
        result.architecture = self.architecture
        result.crafted_on = slot
        robust = None
        if ensemble.is_ensemble(result):  # AutoAttack: the per-image worst case over its attacks
            ensemble.add_metrics(result)
            robust = ensemble.robust_images(result)
        per_class.add_metrics(result, self.session.data_info.class_names, robust)
        if targets.has_targets(result):  # per-image targets (APGD-T): the attacker's view beside the defender's
            targets.add_metrics(result)
        if deployed is not None:
            with self.timer.timed("score"):
                self.add_control(result, spec, scorer)
        return result

    def judge(self, crafted: Examples | AttackResult, slot: ModelSlot | None = None) -> AttackResult:
        """``crafted``'s examples as they are, scored by ``slot`` (default: the plain model) of this architecture."""
        streamed.require_every_example(crafted, "judging examples on another model")
        seed_everything(self.session.settings.seed)
        with self.timer.timed("score"):
            judged = score(crafted, self.scorer(slot or self.slot()))
        judged.architecture = self.architecture
        judged.source_architecture = crafted.source_architecture or crafted.architecture
        judged.source_model_uri, judged.examples_uri = crafted.source_model_uri or crafted.model_uri, crafted.examples_uri
        return judged

    def add_control(self, result: AttackResult, spec, scorer: Scorer) -> None:
        """A patch cell's random-noise control, deployed the same way, scored by the same slot."""
        values = patch_control.control_metrics(result, spec, scorer, self.session.settings.seed)
        result.metrics.update(values)
        result.metrics.update(statistics.intervals(values, result.sample_sizes))
