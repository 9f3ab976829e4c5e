"""A cell over a streamed evaluation set: read, attacked and scored one batch at a time.

For attacks whose example of an image depends on that image alone (``AttackSpec.per_image``:
FGM, PGD, ...), a data set larger than memory is gated batch by batch (``--stream-batch``):
each batch is decoded, attacked (its examples cached on disk, not kept in memory), predicted
and measured, then dropped. What the cell keeps is what its verdict and report need:
every image's label, predictions and distances, and the images of the examples file's
sample (``--keep-examples``, the same seeded sample the in-memory path keeps). The metrics are
those of ``scoring.score`` on the whole set, computed from the same per-image values.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..attacks.base import seed_everything
from ..data import example_files
from ..engine.session import AttackRun
from ..errors import NotApplicable
from ..metrics import formulas as m
from ..metrics import statistics
from ..models.predictors import predict_in_batches
from ..models.slot import ModelSlot
from .phases import PhaseTimer
from .result import AttackResult, identity_index
from .scoring import Scorer, metric_values

PROGRESS_SECONDS = 5.0


def streams(session, spec, slot: ModelSlot, max_samples: int | None) -> bool:
    """Whether ``spec`` on ``slot`` runs batch by batch: a streamed session, an attack of one image at a time
    on a model's own classifier (no defense in front), the whole evaluation set (no ``max_samples`` cap)."""
    return (session.stream is not None and spec.per_image and spec.deploy is None and spec.generate_on == "eval"
            and not slot.defense_key and slot.classifier is None
            and not (max_samples and not session.settings.samples))


def craft_streamed(session, spec, resolved: dict[str, Any], slot: ModelSlot, scorer: Scorer, architecture: str,
                   timer: PhaseTimer) -> AttackResult:
    stream, seed = session.stream, session.settings.seed
    n = session.eval_size(architecture)
    y = np.asarray(stream.labels[:n])
    image_bytes = int(np.prod(stream.info.input_shape)) * 4
    kept = example_files.keep_sample(n, example_files.examples_to_keep(n, image_bytes, session.settings.keep_examples),
                                     seed)
    kept = np.arange(n) if kept is None else kept
    clean_p, adv_p, tables, kept_clean, kept_adv = [], [], [], [], []
    extra_params, seconds, origins, first_key = {}, 0.0, set(), None  # the batches' runs, without their images
    started = last_line = time.perf_counter()
    for start, stop, x in _prefetched(stream, n, timer):
        with timer.timed("craft_adaptive" if slot.recipe else "craft"):
            run = session.attack_run(slot, spec.name, resolved, x, remember=False)
        seed_everything(seed)
        with timer.timed("score"):
            clean_p.append(predict_in_batches(scorer.classifier, x, 256))
            adv_p.append(predict_in_batches(scorer.classifier, run.x_adv, 256))
            tables.append(m.distance_table(x, run.x_adv, offset=start, total=n))
        rows = kept[(kept >= start) & (kept < stop)] - start
        kept_clean.append(x[rows])
        kept_adv.append(np.asarray(run.x_adv)[rows])
        extra_params.update(run.extra_params)
        seconds += run.seconds
        origins.add(run.reused)
        first_key = first_key or run.key
        del run
        if time.perf_counter() - last_line >= PROGRESS_SECONDS:
            last_line = time.perf_counter()
            session.progress(f"{spec.name} on {scorer.model_uri}: {stop}/{n} images streamed "
                             f"({last_line - started:.0f} s)")
    clean_p, adv_p = np.concatenate(clean_p), np.concatenate(adv_p)
    distances = {name: np.concatenate([t[name] for t in tables]) for name in tables[0]}
    source = identity_index(n)
    with timer.timed("score"):
        values = metric_values(y, clean_p, adv_p, source, None, None, distances)
        sizes = statistics.sample_sizes(y, y, clean_p.argmax(1), None, None)
        values.update(statistics.intervals(values, sizes))
    x_clean, x_adv = np.concatenate(kept_clean), np.concatenate(kept_adv)
    # the examples' origin as one tag: "cache" when every batch came from the cache
    run = AttackRun(x_adv, {}, extra_params, seconds, "cache" if origins == {"cache"} else "", first_key)
    params = {**resolved, **run.extra_params}
    return AttackResult(spec.name, params, scorer.model_uri, x_clean, y, x_adv, clean_p, adv_p, values, distances,
                        run, sample_sizes=sizes, kept_index=kept)


def require_every_example(result, needs: str) -> None:
    """A streamed cell keeps a sample of its examples: what needs them all is not applicable to it."""
    if getattr(result, "kept_index", None) is not None:
        raise NotApplicable(f"{needs} needs every adversarial example of the cell, and a streamed cell "
                            "(--stream-batch) keeps a sample of them; give --stream-batch 0 (with --samples N to "
                            "bound the images held in memory)")


def _prefetched(stream, n: int, timer: PhaseTimer):
    """``(start, stop, images)`` batch after batch, the next one decoded on a thread while this one is attacked
    (Pillow decodes without the GIL): two batches in memory at most. Waiting for a batch is the ``read`` phase."""
    bounds = [(start, min(start + stream.batch, n)) for start in range(0, n, stream.batch)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="robustness-read") as reader:
        pending = reader.submit(stream.read, *bounds[0]) if bounds else None
        for i, (start, stop) in enumerate(bounds):
            with timer.timed("read"):
                x = pending.result()
            pending = reader.submit(stream.read, *bounds[i + 1]) if i + 1 < len(bounds) else None
            yield start, stop, x
            del x


__all__ = ["craft_streamed", "require_every_example", "streams"]
