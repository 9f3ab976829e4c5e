"""Distance metrics agree with scipy's and scikit-learn's own implementations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import wasserstein_distance as scipy_wasserstein
from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances

from pytest_robustness.metrics import formulas as m

# Pixel values as images have them: black, or visibly above it (denormal floats are not images).
pixels = st.one_of(st.just(0.0), st.floats(2.0**-13, 1.0, width=32))


@st.composite
def image_pairs(draw):
    n, h, w, c = draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.sampled_from([1, 3]))
    clean = draw(arrays(np.float32, (n, h, w, c), elements=pixels))
    adv = draw(arrays(np.float32, (n, h, w, c), elements=pixels))
    return clean, adv


def flat(x):
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


@settings(max_examples=60, deadline=None)
@given(image_pairs())
def test_norms_match_sklearn_paired_distances(pair):
    clean, adv = pair
    np.testing.assert_allclose(m.l_2_norm(clean, adv), paired_euclidean_distances(flat(clean), flat(adv)), atol=1e-9)
    np.testing.assert_allclose(m.l_1_norm(clean, adv), paired_manhattan_distances(flat(clean), flat(adv)), atol=1e-9)
    np.testing.assert_allclose(m.l_inf_norm(clean, adv), np.abs(flat(adv) - flat(clean)).max(axis=1), atol=0)


@settings(max_examples=60, deadline=None)
@given(image_pairs())
def test_cosine_similarity_matches_sklearn(pair):
    clean, adv = pair
    # Undefined for an all-black image (sklearn says 1 for two of them, we say 0): not a real image pair.
    assume((np.abs(flat(clean)).sum(axis=1) > 0).all() and (np.abs(flat(adv)).sum(axis=1) > 0).all())
    np.testing.assert_allclose(m.cosine_similarity(clean, adv),
                               1.0 - paired_cosine_distances(flat(clean), flat(adv)), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(image_pairs())
def test_wasserstein_matches_scipy_per_image(pair):
    clean, adv = pair
    expected = [scipy_wasserstein(a, b) for a, b in zip(flat(clean), flat(adv))]
    np.testing.assert_allclose(m.wasserstein_distance(clean, adv), expected, atol=1e-9)


def test_dioptra_aliases_are_the_same_norms():
    rng = np.random.default_rng(0)
    clean, adv = rng.random((4, 28, 28, 1)), rng.random((4, 28, 28, 1))
    table = m.distance_table(clean, adv)
    np.testing.assert_array_equal(table["euclidean_distance"], table["l_2_norm"])
    np.testing.assert_array_equal(table["manhattan_distance"], table["l_1_norm"])
    assert set(table) == set(m.DISTANCE_METRICS)


def test_summary_is_mean_median_stdev_iqr_min_max():
    values = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    summary = m.summarise_distances({"l_2_norm": values})
    assert summary == pytest.approx({
        "l_2_norm": 4.0, "l_2_norm_median": 3.0, "l_2_norm_stdev": np.std(values), "l_2_norm_iqr": 2.0,
        "l_2_norm_min": 1.0, "l_2_norm_max": 10.0,
    })


def test_attack_success_rate_counts_only_correctly_classified():
    y = np.array([0, 1, 2, 3])
    clean = np.array([0, 1, 2, 0])  # last one already wrong: not counted
    adv = np.array([0, 2, 2, 3])  # one of three correct ones flipped
    assert m.attack_success_rate(y, clean, adv) == pytest.approx(1 / 3)
    assert m.accuracy(y, adv) == 0.75


def test_the_blocked_distance_table_equals_each_metric_computed_on_its_own():
    from pytest_robustness.metrics import formulas

    rng = np.random.default_rng(3)
    clean = rng.random((70, 12, 12, 3), dtype=np.float32)  # more than one block of DISTANCE_CHUNK images
    adv = np.clip(clean + np.float32(0.05) * np.sign(rng.normal(size=clean.shape)).astype(np.float32), 0, 1)
    source = rng.permutation(70)
    table = formulas.distance_table(clean, adv, source)
    for name, fn in formulas.DISTANCE_METRICS.items():
        assert np.array_equal(table[name], fn(clean[source], adv)), name  # the same values, bit for bit


def test_wasserstein_is_measured_on_the_same_evenly_spaced_images_whole_or_batch_by_batch(monkeypatch):
    """Above the values bound the Wasserstein distance is measured on evenly spaced images (NaN elsewhere),
    chosen over the whole set, so a table built batch by batch equals the one built at once."""
    from pytest_robustness.metrics import formulas

    monkeypatch.setattr(formulas, "WASSERSTEIN_VALUES", 10 * 6 * 6 * 3)  # ten images' worth
    rng = np.random.default_rng(5)
    clean = rng.random((37, 6, 6, 3), dtype=np.float32)
    adv = np.clip(clean + np.float32(0.1) * rng.standard_normal(clean.shape).astype(np.float32), 0, 1)
    whole = formulas.distance_table(clean, adv)
    measured = ~np.isnan(whole["wasserstein_distance"])
    assert measured.sum() == 10 and measured[0] and measured[-1]
    np.testing.assert_array_equal(whole["wasserstein_distance"][measured],
                                  formulas.wasserstein_distance(clean[measured], adv[measured]))
    parts = [formulas.distance_table(clean[s:s + 8], adv[s:s + 8], offset=s, total=37) for s in range(0, 37, 8)]
    for name in whole:
        np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), whole[name])
    summary = formulas.summarise_distances(whole)
    assert summary["wasserstein_distance"] == pytest.approx(whole["wasserstein_distance"][measured].mean())
    assert not np.isnan(whole["l_2_norm"]).any()
    assert formulas.wasserstein_rows(10, 6 * 6 * 3) is None  # within the bound: every image
