"""Transfer: the shipped matrix on two tiny models, its numbers recomputed, a warm re-run, infer, tarballs.

The inner runs are in process (pytester) on real sqlite MLflow stores with real Keras models,
real ART attacks and real PNG tarballs; the tarball safety tests need no model at all.
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
from pathlib import Path

import mlflow
import numpy as np
import pytest

from helpers import MODEL_NAME, TINY_TRAIN, run_robustness, session_run_id
from pytest_robustness.cells.transfer import SETTING_TAG, transfer_rate
from pytest_robustness.data.adversarial_sets import (
    extract_tarball,
    read_dioptra_tarball,
    read_examples,
    read_run_examples,
    write_dioptra_tarball,
)
from pytest_robustness.errors import RobustnessUsageError
from pytest_robustness.models.classifiers import make_classifier
from pytest_robustness.options.thresholds import Cell, load_table
from pytest_robustness.reports.sweeps import sweep_series
from pytest_robustness.reports.transfer_matrix import matrix_cells

SUITES = Path(__file__).resolve().parent.parent / "robustness_suites"
BOTH = ("--architecture", "shallow_net", "--architecture", "le_net", *TINY_TRAIN, "--samples", "100",
        "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")
# Tiny models miss the suite's floors (measured on fully trained ones): check every number, gate nothing.
NO_FLOORS = """
[[thresholds]]
attack = "fgm"
clean_accuracy = 0.0
adversarial_accuracy = 0.0

[[thresholds]]
attack = "patch"
clean_accuracy = 0.0
adversarial_accuracy = 0.0
"""
URI = re.compile(r"^models:/\w+/\d+$")


def _predict(model_uri: str, x: np.ndarray) -> np.ndarray:
    """The registered model's labels, through the same ART wrapper a user would build."""
    model = mlflow.tensorflow.load_model(model_uri)
    return make_classifier(model, 10, x.shape[1:]).predict(x, batch_size=256).argmax(1)


def test_matrix_recomputes_from_each_run_and_a_second_run_crafts_nothing(pytester, store, tmp_path):
    shutil.copy(SUITES / "test_transfer.py", pytester.path / "test_shipped_transfer.py")
    (pytester.path / "thresholds.toml").write_text(NO_FLOORS)
    args = (*BOTH, "-m", "transfer", "-k", "eps0.3 or scale0.5-augment", "--thresholds", "thresholds.toml",
            f"--robustness-cache-dir={tmp_path / 'cache'}")

    cold = run_robustness(pytester, *args, store=store, tiny=False)
    cold.assert_outcomes(passed=8, skipped=4)  # 4 pairs x (fgm, patch); from-baseline cells need --baseline-uri
    cold.stdout.fnmatch_lines(["*transfer fgm linf-eps0.3: adversarial accuracy of the target*",
                               "  source \\ target  le_net  shallow_net", "  le_net  *", "  shallow_net  *"])
    session = session_run_id(cold)
    cells = [r for r in store.children(session) if SETTING_TAG in r.data.tags]
    assert len(cells) == 8
    mlflow.set_tracking_uri(store.uri)
    for run in cells:
        params, metrics = run.data.params, run.data.metrics
        assert URI.match(params["model_uri"]) and URI.match(params["source_model_uri"]), params
        assert params["model_uri"].endswith(f"_{params['architecture']}/1")
        assert params["source_model_uri"].endswith(f"_{params['source_architecture']}/1")
        data = read_examples(store.download(run.info.run_id, "adversarial_examples.npz", tmp_path / run.info.run_id))
        index = data["source_index"] if "source_index" in data else np.arange(len(data["x_adv"]))
        y_adv = data["y_true"][index]
        target = _predict(params["model_uri"], data["x_adv"])
        source = _predict(params["source_model_uri"], data["x_adv"])
        assert metrics["adversarial_accuracy"] == np.mean(target == y_adv), run.info.run_name
        assert metrics["clean_accuracy"] == np.mean(_predict(params["model_uri"], data["x_clean"]) == data["y_true"])
        carries = data["modified"] if "modified" in data else np.ones(len(y_adv), dtype=bool)
        fools_source = (source != y_adv) & carries
        assert metrics["transfer_rate"] == np.mean(target[fools_source] != y_adv[fools_source]), run.info.run_name
    # Self-transfer is the white-box cell: every example that fools the source fools the target.
    assert all(r.data.metrics["transfer_rate"] == 1.0 for r in cells
               if r.data.params["source_architecture"] == r.data.params["architecture"])

    # The session run's matrix: one heatmap and CSV per setting, the CSV holding the runs' numbers.
    artifacts = {a.path for a in store.client.list_artifacts(session, "transfer_matrix")}
    assert artifacts == {f"transfer_matrix/{name}.{ext}" for name in ("fgm_linf-eps0.3", "patch_scale0.5-augment")
                         for ext in ("png", "csv")}
    csv_text = store.download(session, "transfer_matrix/fgm_linf-eps0.3.csv", tmp_path / "csv").read_text()
    grid = matrix_cells(cells)["fgm linf-eps0.3"]
    assert csv_text.splitlines()[0] == "source,le_net,shallow_net"
    assert csv_text.splitlines()[1] == f"le_net,{grid[('le_net', 'le_net')]:.6f},{grid[('le_net', 'shallow_net')]:.6f}"
    png = store.download(session, "transfer_matrix/fgm_linf-eps0.3.png", tmp_path / "png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert sweep_series(cells) == {}  # transferred examples stay out of the white-box accuracy-vs-eps plots

    warm = run_robustness(pytester, *args, store=store, tiny=False)
    warm.assert_outcomes(passed=8, skipped=4)
    # Each source's examples come from the disk cache once, then are shared by its other targets.
    warm.stdout.fnmatch_lines(["reuse: models: 0 trained, 2 reused from the registry; "
                               "attack examples: 0 computed, 8 reused (4 from the cache, 4 shared in-session)"])
    warm_cells = {r.data.tags["robustness.nodeid"]: r for r in store.children(session_run_id(warm))
                  if SETTING_TAG in r.data.tags}
    for run in cells:
        again = warm_cells[run.data.tags["robustness.nodeid"]]
        assert again.data.tags["robustness.examples"] in ("cache", "memory")
        assert again.data.metrics == run.data.metrics


INFER_SUITE = """
import os


def test_infer(robustness):
    result = robustness.infer(os.environ["SOURCE_RUN"], os.environ.get("ARTIFACT", "adversarial_examples.npz"))
    robustness.check(result, adversarial_accuracy=0.0)
"""


def test_infer_judges_another_runs_examples_and_a_dioptra_tarball(pytester, trained_store, tmp_path, monkeypatch):
    """The trained store's FGM cells (another session) judged by the same model: the same numbers;
    then Dioptra's tarball layout, logged by a run in another experiment."""
    source = next(r for r in trained_store.runs() if r.data.tags.get("robustness.kind") == "test"
                  and r.data.params.get("fgm.norm") == "inf")
    pytester.makepyfile(test_infer_suite=INFER_SUITE)
    monkeypatch.setenv("SOURCE_RUN", source.info.run_id)
    result = run_robustness(pytester, store=trained_store)
    result.assert_outcomes(passed=1)
    judged = next(r for r in trained_store.children(session_run_id(result)) if r.data.tags.get("robustness.kind") == "test")
    assert judged.data.params["examples_uri"] == f"runs:/{source.info.run_id}/adversarial_examples.npz"
    assert judged.data.tags["robustness.examples"] == "mlflow"  # crafted nothing
    assert judged.data.params["source_model_uri"] == source.data.params["model_uri"] == judged.data.params["model_uri"]
    for name in ("clean_accuracy", "adversarial_accuracy", "l_inf_norm"):
        assert judged.data.metrics[name] == source.data.metrics[name], name
    digits = [str(i) for i in range(10)]
    with pytest.raises(RobustnessUsageError, match=rf"^infer: run {source.info.run_id} has no artifact 'nope.npz' "
                                                   r"\(artifacts: adversarial_examples.npz, .*\)$"):
        read_run_examples(trained_store.client, source.info.run_id, "nope.npz", digits, (28, 28, 1))
    with pytest.raises(RobustnessUsageError, match=r"^infer: .* holds images of shape \(28, 28, 1\); this session's "
                                                   r"models take \(32, 32, 3\)$"):
        read_run_examples(trained_store.client, source.info.run_id, "adversarial_examples.npz", digits, (32, 32, 3))

    # Dioptra's fgm output: adv_testing/<label>/adv_*.png in testing_adversarial_fgm.tar.gz.
    data = read_examples(trained_store.download(source.info.run_id, "adversarial_examples.npz", tmp_path / "npz"))
    tarball = write_dioptra_tarball(tmp_path / "dioptra", tmp_path / "testing_adversarial_fgm.tar.gz",
                                    data["x_adv"], data["y_true"], digits)
    client = trained_store.client
    dioptra_run = client.create_run(client.create_experiment("dioptra-demo"))
    client.log_param(dioptra_run.info.run_id, "model_name", MODEL_NAME)
    client.log_param(dioptra_run.info.run_id, "model_version", "1")
    client.log_artifact(dioptra_run.info.run_id, str(tarball))
    client.set_terminated(dioptra_run.info.run_id)
    monkeypatch.setenv("SOURCE_RUN", dioptra_run.info.run_id)
    monkeypatch.setenv("ARTIFACT", "testing_adversarial_fgm.tar.gz")
    result = run_robustness(pytester, store=trained_store)
    result.assert_outcomes(passed=1)
    judged = next(r for r in trained_store.children(session_run_id(result)) if r.data.tags.get("robustness.kind") == "test")
    assert judged.data.params["source_model_uri"] == f"models:/{MODEL_NAME}/1"
    assert "clean_accuracy" not in judged.data.metrics  # a tarball holds no clean images
    quantised = (np.clip(data["x_adv"], 0, 1) * 255 + 0.5).astype(np.uint8).astype(np.float32) / 255.0  # the PNGs
    mlflow.set_tracking_uri(trained_store.uri)
    expected = np.mean(_predict(judged.data.params["model_uri"], quantised) == data["y_true"])
    assert judged.data.metrics["adversarial_accuracy"] == expected


WHITE_BOX = """
from pytest_robustness import attack_cases


@attack_cases("fgm", [dict(norm="inf", eps=0.3)])
def test_fgm(robustness, architecture, params):
    robustness.check(robustness.attack("fgm", **params), clean_accuracy=0.0)
"""


def test_transfer_from_the_baseline_reads_its_gated_runs_examples(pytester, store, tmp_path):
    """Release 1 is gated (its cell logs its examples); release 2 is judged on release 1's examples,
    read back from that run (the cache is off: nothing could come from it) and crafted nowhere."""
    shutil.copy(SUITES / "test_transfer.py", pytester.path / "test_shipped_transfer.py")
    pytester.makepyfile(test_white_box=WHITE_BOX)
    logs = ("-o", "log_cli=true", "--log-cli-level=INFO")  # the session logs every attack it runs
    first = run_robustness(pytester, "test_white_box.py", "--robustness-cache=off", *logs, store=store)
    first.assert_outcomes(passed=1)
    assert f"fgm on models:/{MODEL_NAME}/1" in first.stdout.str()
    gated = next(r for r in store.children(session_run_id(first)) if r.data.tags.get("robustness.kind") == "test")

    (pytester.path / "thresholds.toml").write_text(NO_FLOORS)
    # A weaker candidate (half an epoch): gated on every number but the regression, which it has.
    second = run_robustness(pytester, "test_shipped_transfer.py", "-k", "test_fgm_from_baseline and eps0.3",
                            "--robustness-cache=off", "--train", "epochs=0.5", "--thresholds", "thresholds.toml",
                            "--max-regression=1", f"--baseline-uri=models:/{MODEL_NAME}/1", *logs, store=store)
    second.assert_outcomes(passed=1)
    cell = next(r for r in store.children(session_run_id(second)) if r.data.tags.get("robustness.kind") == "test")
    params = cell.data.params
    assert params["examples_uri"] == f"runs:/{gated.info.run_id}/adversarial_examples.npz"
    assert (params["source_architecture"], params["source_model_uri"], params["model_uri"]) == (
        "baseline", f"models:/{MODEL_NAME}/1", f"models:/{MODEL_NAME}/2")
    assert cell.data.tags["robustness.examples"] == "mlflow"
    assert "fgm on" not in second.stdout.str()  # no attack ran
    before = read_examples(store.download(gated.info.run_id, "adversarial_examples.npz", tmp_path / "before"))
    after = read_examples(store.download(cell.info.run_id, "adversarial_examples.npz", tmp_path / "after"))
    assert np.array_equal(before["x_adv"], after["x_adv"]) and np.array_equal(before["y_true"], after["y_true"])
    mlflow.set_tracking_uri(store.uri)
    assert cell.data.metrics["adversarial_accuracy"] == np.mean(
        _predict(params["model_uri"], after["x_adv"]) == after["y_true"])
    # Gated against the baseline on the very same examples (its white-box number).
    assert cell.data.metrics["baseline_adversarial_accuracy"] == gated.data.metrics["adversarial_accuracy"]


# -- tarball safety ------------------------------------------------------------------------------
def _tarball(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    """A Dioptra-looking tarball (one real PNG) plus ``member``."""
    from PIL import Image

    png = io.BytesIO()
    Image.new("L", (28, 28)).save(png, format="PNG")
    with tarfile.open(path, "w:gz") as archive:
        good = tarfile.TarInfo("adv_testing/0/adv_0.png")
        good.size = len(png.getvalue())
        archive.addfile(good, io.BytesIO(png.getvalue()))
        member.size = len(data) if member.isfile() else 0
        archive.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _member(name: str, kind=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize("member, problem", [
    (_member("/tmp/robustness-evil/evil.png"), "has an absolute path"),
    (_member("adv_testing/0/../../../evil.png"), "climbs out of the folder with '..'"),
    (_member("adv_testing/0/link.png", tarfile.SYMTYPE, "../../../outside.png"), "is a link"),
    (_member("adv_testing/0/hard.png", tarfile.LNKTYPE, "/etc/passwd"), "is a link"),
    (_member("adv_testing/0/tty", tarfile.CHRTYPE), "is a device file or pipe"),
    (_member("adv_testing/0/disk", tarfile.BLKTYPE), "is a device file or pipe"),
    (_member("adv_testing/0/pipe", tarfile.FIFOTYPE), "is a device file or pipe"),
], ids=["absolute", "dotdot", "symlink-out", "hardlink", "char-device", "block-device", "fifo"])
def test_a_dangerous_tarball_member_is_refused_naming_it_and_nothing_is_written(tmp_path, member, problem):
    tarball = _tarball(tmp_path / "testing_adversarial_fgm.tar.gz", member, b"evil")
    destination = tmp_path / "work" / "extracted"
    with pytest.raises(RobustnessUsageError) as refused:
        extract_tarball(tarball, destination)
    message = str(refused.value)
    assert "\n" not in message and f"member {member.name!r} {problem}" in message, message
    assert message.startswith("infer: testing_adversarial_fgm.tar.gz: ")
    assert not destination.exists()  # checked before anything is extracted
    assert not Path("/tmp/robustness-evil").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["testing_adversarial_fgm.tar.gz"]


def test_a_clean_tarball_extracts_inside_the_folder_only(tmp_path):
    images = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
    tarball = write_dioptra_tarball(tmp_path / "made", tmp_path / "t.tar.gz", images, np.array([0, 3, 3]),
                                    [str(i) for i in range(10)])
    destination = tmp_path / "extracted"
    extract_tarball(tarball, destination)
    files = sorted(str(p.relative_to(destination)) for p in destination.rglob("*.png"))
    assert files == ["adv_testing/0/adv_00000.png", "adv_testing/3/adv_00001.png", "adv_testing/3/adv_00002.png"]
    # Read back as the session's models take them: same pixels at the same size; else resized, like Dioptra's infer.
    found = read_dioptra_tarball(tarball, [str(i) for i in range(10)], tmp_path / "again", (28, 28, 1))
    assert np.array_equal(found.y_true, [0, 3, 3]) and found.x_clean is None
    assert np.abs(found.x_adv - images).max() <= 0.5 / 255 + 1e-6
    colour = write_dioptra_tarball(tmp_path / "rgb", tmp_path / "rgb.tar.gz", np.ones((2, 32, 32, 3), np.float32),
                                   np.array([1, 2]), [str(i) for i in range(10)])
    assert read_dioptra_tarball(colour, [str(i) for i in range(10)], tmp_path / "rgb-out", (28, 28, 1)).x_adv.shape \
        == (2, 28, 28, 1)


# -- thresholds and the metric ---------------------------------------------------------------------
SOURCE_THRESHOLDS = """
[[thresholds]]
attack = "fgm"
adversarial_accuracy = 0.05

[[thresholds]]
attack = "fgm"
source_architecture = "shallow_net"
architecture = "le_net"
adversarial_accuracy = 0.5
"""


def test_thresholds_select_by_source_architecture_and_fall_back(tmp_path):
    (tmp_path / "t.toml").write_text(SOURCE_THRESHOLDS)
    table = load_table(tmp_path / "t.toml", tmp_path, 0.02)

    def floor(**cell):
        bounds = table.bounds_for(Cell("fgm", {"eps": 0.3}, **cell), {}, {"adversarial_accuracy": 0.9})
        return [(b.value, b.source) for b in bounds]

    assert floor(architecture="le_net", source_architecture="shallow_net") == [(0.5, "t.toml entry 2")]
    assert floor(architecture="le_net", source_architecture="le_net") == [(0.05, "t.toml entry 1")]
    assert floor(architecture="le_net") == [(0.05, "t.toml entry 1")]  # white-box cells: as before
    (tmp_path / "bad.toml").write_text('[[thresholds]]\nsource_architecture = "lenet"\nadversarial_accuracy = 0.1\n')
    with pytest.raises(RobustnessUsageError, match=r"bad.toml: thresholds entry 1: source_architecture = 'lenet' is "
                                                   r"unknown; allowed: le_net, .*, baseline$"):
        load_table(tmp_path / "bad.toml", tmp_path, 0.02)


def test_transfer_rate_counts_what_fools_the_source_and_ignores_clean_copies():
    y = np.array([0, 1, 2, 3, 4])
    source = np.array([9, 9, 9, 3, 9])  # fools on 0, 1, 2, 4
    target = np.array([9, 1, 9, 9, 4])  # of those, fooled on 0 and 2
    assert transfer_rate(y, source, target, np.ones(5, dtype=bool)) == 0.5
    assert transfer_rate(y, source, target, np.array([True, True, False, True, False])) == 0.5
    assert transfer_rate(y, source, target, np.array([False, True, False, True, True])) == 0.0
    assert np.isnan(transfer_rate(y, y, target, np.ones(5, dtype=bool)))  # nothing fooled the source
