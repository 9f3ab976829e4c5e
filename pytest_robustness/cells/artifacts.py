"""A cell's artifacts: the adversarial examples (``.npz``), per-image distances (``.csv``) and the
evidence pictures, each content-addressed in the cache so a re-run copies instead of redrawing."""

from __future__ import annotations

import csv
import io
from typing import Callable, Mapping

import numpy as np

from ..data import example_files
from ..data.datasets import content_digest
from . import pictures
from .result import AttackResult, Deferred, grid_rows, image_rows

EVIDENCE_VERSION = 1  # bump when the evidence pictures change: it keys the cached PNGs


def log_examples(tracker, run_id: str, cache, result: AttackResult, prefix: str = "",
                 undefended: AttackResult | None = None, class_names=(), keep: int | None = None,
                 seed: int = 0, submit: Callable[[str, Callable[[], None]], None] | None = None) -> int | None:
    """Examples, per-image distances and evidence PNGs into run ``run_id``. The examples file
    (``data.example_files``: compact, exact) is content-addressed in the cache, so a re-run copies it
    instead of compressing megabytes again. ``keep`` examples at most (0: all; None: the default size
    bound), a sample drawn from ``seed``; returns how many clean images the file keeps (None: not logged).

    ``submit(what, work)`` runs each file's writing (e.g. on the tracker's background writer; default: at
    once). A picture of a defense's view of the images is drawn here: drawing it runs the defense, seeded."""
    submit = submit or (lambda what, work: work())
    kept_count = None
    if undefended is None or result.x_adv is not undefended.x_adv:  # oblivious: the same examples, logged once
        # A deployed attack's rows also say which clean image each derives from and whether it carries
        # the attack, so the file alone gives every adversarial image its label.
        pairing = {"source_index": result.source_index, "modified": result.modified} if result.deployed else {}
        n = result.size
        if result.kept_index is not None:  # streamed: the sample was kept while the batches went by
            kept = result.kept_index if len(result.kept_index) < n else None
            kept_count = len(result.kept_index)
        else:
            kept_count = example_files.examples_to_keep(n, int(result.x_clean[0].size) * 4 if n else 0, keep)
            kept = example_files.keep_sample(n, kept_count, seed)

        def examples() -> None:
            key = cache.key("examples", example_files.FORMAT_VERSION,
                            *(content_digest(a) for a in (result.x_clean, result.x_adv, result.y_true,
                                                          *pairing.values())),
                            None if kept is None else content_digest(kept))

            def write(path):
                arrays = dict(x_clean=result.x_clean, x_adv=result.x_adv, y_true=result.y_true, **pairing)
                if result.kept_index is not None and kept is not None:
                    arrays.update(y_true=result.y_true[kept], kept_index=kept)
                elif kept is not None:
                    arrays = example_files.subset(kept, **arrays)
                example_files.write_examples(path, **arrays)

            with cache.file(key, f"{prefix}adversarial_examples.npz", write) as npz:
                tracker.log_artifact(run_id, npz)
            if result.distances:
                with cache.file(key, f"{prefix}distance_metrics.csv",
                                lambda path: path.write_bytes(distance_csv(result.distances))) as csv_file:
                    tracker.log_artifact(run_id, csv_file)

        submit(f"{prefix}adversarial_examples.npz", examples)
    # Pictures are content-addressed too: keyed by what is drawn, drawn only when missing.
    if result.attack == "patch" and result.run is not None:
        patches = result.run.x_adv

        def patch() -> None:
            key = cache.key("patch.png", EVIDENCE_VERSION, content_digest(patches))
            with cache.file(key, f"{prefix}patch.png",
                            lambda path: path.write_bytes(pictures.patch_png(patches))) as png:
                tracker.log_artifact(run_id, png)

        submit(f"{prefix}patch.png", patch)
    columns = sample_columns(result, undefended, class_names)

    def samples() -> None:
        key = cache.key("samples.png", EVIDENCE_VERSION,
                        [(title, images.key if isinstance(images, Deferred) else content_digest(images),
                          list(captions)) for title, images, captions in columns])
        with cache.file(key, f"{prefix}samples.png", lambda path: path.write_bytes(pictures.sample_grid_png(
                [(title, np.asarray(images), captions) for title, images, captions in columns]))) as png:
            tracker.log_artifact(run_id, png)

    if any(isinstance(images, Deferred) for _, images, _ in columns):
        samples()
    else:
        submit(f"{prefix}samples.png", samples)
    return kept_count


def sample_columns(result: AttackResult, undefended: AttackResult | None = None, class_names=()) -> list:
    """Columns of the evidence grid: clean / adversarial (undefended model) / defended input (defended model),
    captioned with class names (the label index where there are none)."""
    def name(label) -> str:
        return class_names[label] if 0 <= label < len(class_names) else str(label)

    base = undefended or result
    rows = grid_rows(result)
    source = result.source_index[rows]
    columns = [
        ("clean", result.x_clean[image_rows(result, source)],
         [f"true {name(t)} pred {name(p)}" for t, p in zip(result.y_true[source], base.clean_predictions[source])]),
    ]
    if undefended is None:
        columns.append(("adversarial", result.x_adv[image_rows(result, rows)],
                        [f"pred {name(p)}" for p in result.adversarial_predictions[rows]]))
        return columns
    # The undefended model on ``result``'s examples' counterparts (same positions, same sources).
    base_rows = grid_rows(base)[:len(rows)]
    columns.append(("adversarial\n(undefended)", base.x_adv[base_rows],
                    [f"pred {name(p)}" for p in base.adversarial_predictions[base_rows]]))
    shown = result.defended_inputs if result.defended_inputs is not None else result.x_adv[rows]
    columns.append((f"{result.defense}\n({result.threat_model})", shown,
                    [f"pred {name(p)}" for p in result.adversarial_predictions[rows]]))
    return columns


write_npz = example_files.write_npz  # moved to the data layer with the examples file


def distance_csv(table: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    names = list(table)
    writer.writerow(["image", *names])
    for i, row in enumerate(zip(*(table[n] for n in names))):
        writer.writerow([i, *(f"{v:.8g}" for v in row)])
    return buffer.getvalue().encode()
