"""Defenses reuse the attack's examples; patches are generated once and shared; evidence is logged.

Drives a small real suite (shallow_net, 1 epoch on 600 images, 40 attacked images)
through pytester (in a subprocess: TensorFlow and scipy cannot be re-imported in one
process), with a sqlite MLflow store in the sandbox.
"""

import json

# Imported here, not in the test: pytester drops modules first imported during a test, and
# numpy/scipy extension modules cannot be loaded twice in one process.
from mlflow.tracking import MlflowClient
from PIL import Image

SUITE = """
import numpy as np

SEEN = {}


def test_jpeg_oblivious(robustness, architecture):
    fgm = robustness.attack("fgm", eps=0.3)
    jpeg = robustness.defend(fgm, "jpeg_compression", "oblivious")
    # Oblivious: the very same examples, not regenerated, through the defended classifier.
    assert jpeg.x_adv is fgm.x_adv and jpeg.run.key == fgm.run.key
    key = next(k for (a, r, k) in robustness.session.memo.keys("classifier") if k.startswith("jpeg_compression"))
    defended = robustness.session.classifier(architecture, defense_key=key)
    expected = float(np.mean(defended.predict(fgm.x_adv).argmax(1) == fgm.y_true))
    assert abs(jpeg.metrics["defended_accuracy"] - expected) < 1e-9
    assert abs(jpeg.metrics["accuracy_gain"] - (expected - fgm.metrics["adversarial_accuracy"])) < 1e-9
    assert (jpeg.defense, jpeg.threat_model) == ("jpeg_compression", "oblivious")
    SEEN["fgm"] = fgm.x_adv


def test_smoothing_oblivious_reuses_the_same_examples(robustness):
    fgm = robustness.attack("fgm", eps=0.3)
    assert fgm.run.reused == "memory" and fgm.x_adv is SEEN["fgm"]
    smooth = robustness.defend(fgm, "spatial_smoothing", "oblivious", window_size=3)
    assert smooth.x_adv is SEEN["fgm"]


def test_jpeg_adaptive_crafts_new_examples(robustness):
    fgm = robustness.attack("fgm", eps=0.3)
    adaptive = robustness.defend(fgm, "jpeg_compression", "adaptive")
    assert adaptive.x_adv is not fgm.x_adv and adaptive.run.key != fgm.run.key
    assert adaptive.threat_model == "adaptive" and 0.0 <= adaptive.metrics["defended_accuracy"] <= 1.0


def test_patch_corrupt(robustness):
    small = robustness.attack("patch", max_iter=2, patch_scale=0.3, patch_deployment_method="corrupt")
    defended = robustness.defend(small, "gaussian_augmentation", "oblivious")
    assert defended.x_adv is small.x_adv
    SEEN["patch"] = small.run.x_adv
    SEEN["noise"] = defended.metrics["defended_accuracy"]


def test_patch_shared_across_deployments_and_noise_seeded(robustness):
    large = robustness.attack("patch", max_iter=2, patch_scale=0.6, patch_deployment_method="augment",
                              patch_application_rate=0.5)
    # One patch per (model, generation parameters), shared by every deployment.
    assert large.run.reused == "memory" and large.run.x_adv is SEEN["patch"]
    assert len(large.x_adv) == 60 and int(large.metrics["patched_count"]) == 20
    assert "targeted_success_rate" in large.metrics
    # A deployment is memoised too: every defense of this cell sees the very same patched images.
    assert robustness.session.deployment(large.run, large.x_clean, dict(large.params)) is large.deployed


def test_gaussian_noise_is_seeded(robustness):
    small = robustness.attack("patch", max_iter=2, patch_scale=0.3, patch_deployment_method="corrupt")
    again = robustness.defend(small, "gaussian_augmentation", "oblivious")
    assert again.metrics["defended_accuracy"] == SEEN["noise"]
"""


def test_defenses_reuse_examples_and_log_evidence(pytester):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("--architecture", "shallow_net", "--train", "epochs=1", "--train", "samples=600",
                                "--samples", "40", "--attack-backend", "art", "-p", "no:randomly")
    result.assert_outcomes(passed=6)

    client = MlflowClient(f"sqlite:///{pytester.path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist")
    runs = {r.data.tags["mlflow.runName"]: r for r in
            client.search_runs([experiment.experiment_id], "tags.`robustness.kind` = 'test'")}
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs.values())
    run = runs["test_patch_corrupt[shallow_net]"]
    assert (run.data.params["defense"], run.data.params["threat_model"]) == ("gaussian_augmentation", "oblivious")
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    for expected in ("samples.png", "patch.png", "distance_metrics.csv", "defended_samples.png"):
        assert expected in names, names
    adaptive = runs["test_jpeg_adaptive_crafts_new_examples[shallow_net]"]
    assert "defended_distance_metrics.csv" in {a.path for a in client.list_artifacts(adaptive.info.run_id)}
    assert {"defended_accuracy", "accuracy_gain", "defended_clean_accuracy", "defended_adversarial_f1",
            "targeted_success_rate"} <= set(run.data.metrics)
    png = client.download_artifacts(run.info.run_id, "patch.png", str(pytester.path))
    with Image.open(png) as image:
        assert min(image.size) >= 200  # upscaled so a person can see it
    json.dumps(run.data.metrics)
