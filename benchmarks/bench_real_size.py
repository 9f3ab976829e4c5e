"""Benchmark at 224x224: the harness's own cost beside the attack's, memory at two data sizes, artifact bytes.

    python benchmarks/bench_real_size.py [--sizes 1000,5000] [--train 60] [--stream-batch 256] [--json PATH]

A new user's setting (issue 20): a Dioptra folder of 224x224 JPEG photographs (two classes,
crops of scikit-learn's sample photographs ``china.jpg`` and ``flower.jpg``, jittered in
position, mirror, brightness and JPEG quality), a plain CNN trained here and logged with
``mlflow.keras.log_model`` (logits, pixels in [0, 255] inside the model: ``Rescaling``),
gated with two FGM L-inf cells (``--model-uri cnn=models:/...``, ``--input-range 0,255``).

For each data size (test images; ``--samples 0``: every one) the suite runs cold in its own
``pytest`` process (fresh store and cache), the folder streamed ``--stream-batch`` images at a
time (0: loaded whole), and the benchmark prints, per cell, its phases from the
``robustness.seconds.*`` tags, the harness's total over the attack's own time (``craft``) and
over ART's ``FastGradientMethod`` run directly on the same model and images (timed here, best
of 2, with its adversarial accuracy beside the cell's; on the first ``ART_IMAGES`` images of
larger sets, a stratified subset, its time scaled to the set), the bytes of the cell's artifacts, and the process's
peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZE = 224
ART_IMAGES = 1000  # ART's reference runs on at most this many images (the whole set in memory)
EPS = (0.03, 0.1)
SUITE = textwrap.dedent(f'''
    import pytest
    from pytest_robustness import attack_cases

    @pytest.mark.fgm
    @attack_cases("fgm", [dict(norm="inf", eps=eps) for eps in {EPS!r}])
    def test_fgm(robustness, architecture, params):
        result = robustness.attack("fgm", **params)
        robustness.check(result, clean_accuracy=0.0)
''')
# The peak is the process's own high-water mark (VmHWM), not getrusage's ru_maxrss: Linux carries ru_maxrss
# across fork and exec, so a suite started from this (large) process would report this process's size.
LAUNCHER = textwrap.dedent('''
    import sys, pytest
    rc = pytest.main(sys.argv[1:])
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print("PEAK_RSS_KB", hwm.split()[1])
    sys.exit(rc)
''')


def make_folder(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """``root/<split>/<class>/*.jpg``: 224x224 crops of the two sample photographs (the shared generator)."""
    from pytest_robustness.data.folder_builders import photo_folder

    return photo_folder(root, per_class, size=SIZE, seed=seed)


def train_and_register(folder: Path, tracking_uri: str, name: str):
    """A plain CNN on [0, 255] pixels ending in logits, trained on the folder's training split."""
    import keras
    import mlflow
    import mlflow.keras

    import numpy as np
    from PIL import Image

    files = sorted((folder / "training").rglob("*.jpg"))
    classes = sorted({f.parent.name for f in files})
    x_train = np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) for f in files])
    y_train = np.array([classes.index(f.parent.name) for f in files])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu"), keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
        keras.layers.Conv2D(32, 3, strides=2, activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2)], name="photo_cnn")
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=3, batch_size=16, verbose=0)
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        mlflow.keras.log_model(model, name="model", registered_model_name=name, pip_requirements=["keras"])
    return model


def test_images(folder: Path, n: int):
    """``n`` test images as the cell reads them (decoded the same way): all of them, or a stratified subset
    (``--samples``' rule) of a larger set; and the set's size."""
    from pytest_robustness.data.image_folders import list_folder
    from pytest_robustness.data.image_stream import FolderStream

    listing = list_folder(folder)
    stream = FolderStream(listing, None, n if n < len(listing.files["testing"]) else 0, 256)
    return stream.read(0, len(stream)), stream.labels, len(listing.files["testing"])


def art_reference(model, x, y, eps: float, repeats: int = 2) -> tuple[float, float]:
    """ART's FGM on the model (fed [0, 1] images scaled to [0, 255], as the cell does): best seconds, accuracy."""
    import keras
    import numpy as np
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import TensorFlowV2Classifier

    scaled = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(255.0), model])
    classifier = TensorFlowV2Classifier(scaled, nb_classes=2, input_shape=(SIZE, SIZE, 3), clip_values=(0.0, 1.0),
                                        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True))
    attack = FastGradientMethod(classifier, norm=np.inf, eps=eps, batch_size=32)
    attack.generate(x[:8])  # warm-up: tracing
    best, x_adv = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        x_adv = attack.generate(x)
        best = min(best, time.perf_counter() - start)
    return best, float(np.mean(classifier.predict(x_adv).argmax(1) == y))


def run_cells(workdir: Path, folder: Path, tracking_uri: str, model_uri: str,
              stream_batch: int) -> tuple[dict, int, float]:
    (workdir / "test_bench.py").write_text(SUITE)
    (workdir / "launch.py").write_text(LAUNCHER)
    args = [sys.executable, "launch.py", "test_bench.py", "-q", "-p", "no:cacheprovider", "--dataset", str(folder),
            "--model-uri", f"cnn={model_uri}", "--input-range", "0,255", "--mlflow-uri", tracking_uri,
            "--samples", "0", "--gradient-masking", "warn", "--robustness-cache-dir", str(workdir / "cache"),
            "--stream-batch", str(stream_batch)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    done = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"the suite failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    peak = int(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("PEAK_RSS_KB")))
    return cells_from_store(tracking_uri, workdir), peak, wall


def cells_from_store(tracking_uri: str, workdir: Path) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    out = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=100):
            tags = run.data.tags
            if "robustness.nodeid" not in tags:
                continue
            phases = {k.rsplit(".", 1)[1]: float(v) for k, v in tags.items() if k.startswith("robustness.seconds.")}
            root = workdir / run.info.artifact_uri.removeprefix("file://")  # relative: the run's cwd
            size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0
            out[run.data.params["fgm.eps"]] = dict(phases=phases, artifact_bytes=size,
                                                   attack_seconds=float(tags.get("robustness.attack_seconds", "nan")),
                                                   adversarial_accuracy=run.data.metrics["adversarial_accuracy"],
                                                   kept_examples=run.data.params.get("kept_examples"))
    return out


def bench(sizes: list[int], train: int, stream_batch: int) -> dict:
    results = {}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-real-size-") as tmp:
            tmp = Path(tmp)
            folder = make_folder(tmp / "photos", {"training": train // 2, "testing": size // 2})
            tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
            model = train_and_register(folder, tracking_uri, "photo_cnn")
            cells, peak, wall = run_cells(tmp, folder, tracking_uri, "models:/photo_cnn/1", stream_batch)
            x, y, n = test_images(folder, ART_IMAGES)
            for eps in EPS:
                cell = cells[str(eps)]
                art_seconds, art_accuracy = art_reference(model, x, y, eps)
                art_seconds *= n / len(x)  # ART on the whole set would take this long
                total = sum(cell["phases"].values())
                cell.update(total_seconds=total, art_fgm_seconds=art_seconds, art_adversarial_accuracy=art_accuracy,
                            art_images=len(x), over_craft=total / max(cell["attack_seconds"], 1e-9),
                            over_art=total / art_seconds)
            del x, y
            results[size] = dict(cells=cells, peak_rss_mb=peak / 1024, wall_seconds=wall,
                                 test_image_mb=n * SIZE * SIZE * 3 * 4 / 2**20, stream_batch=stream_batch)
    return results


def report(results: dict) -> None:
    for size, result in results.items():
        print(f"\n{size} test images at {SIZE}x{SIZE}x3 ({result['test_image_mb']:.0f} MB as float32, "
              f"--stream-batch {result['stream_batch']}): peak RSS {result['peak_rss_mb']:.0f} MB, "
              f"suite wall {result['wall_seconds']:.0f} s")
        print("  eps    read  craft (attack)  score  probe    log  total  total/attack  ART FGM  total/ART  "
              "accuracy (ART)  artifacts")
        for eps, cell in sorted(result["cells"].items()):
            p = cell["phases"]
            print(f"  {eps:<5} {p.get('read', 0):5.1f}  {p.get('craft', 0):5.1f} ({cell['attack_seconds']:5.1f})  "
                  f"{p.get('score', 0):5.1f}  {p.get('probe', 0):5.1f}  "
                  f"{p.get('log', 0):5.1f}  {cell['total_seconds']:5.1f}  {cell['over_craft']:10.1f}x  "
                  f"{cell['art_fgm_seconds']:6.1f} s  {cell['over_art']:8.1f}x  "
                  f"{cell['adversarial_accuracy']:.3f} "
                  f"({cell['art_adversarial_accuracy']:.3f} on {cell['art_images']} of {size})  "
                  f"{cell['artifact_bytes'] / 1e6:6.1f} MB (kept {cell['kept_examples']})")
    sizes = sorted(results)
    if len(sizes) > 1:
        small, large = results[sizes[0]]["peak_rss_mb"], results[sizes[-1]]["peak_rss_mb"]
        print(f"\npeak memory {large:.0f} MB at {sizes[-1]} images vs {small:.0f} MB at {sizes[0]}: "
              f"x{large / small:.2f} (issue 20's target: the same within 20%, met: {large <= 1.2 * small})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000", help="test images per run, comma-separated")
    parser.add_argument("--stream-batch", type=int, default=256, help="images a cell reads at a time (0: load whole)")
    parser.add_argument("--train", type=int, default=60, help="training images")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = bench([int(s) for s in args.sizes.split(",")], args.train, args.stream_batch)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
