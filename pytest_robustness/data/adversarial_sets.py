"""Adversarial sets another MLflow run logged, read back for Dioptra's ``infer``.

Two layouts are accepted:

- ours, ``adversarial_examples.npz`` (``x_clean``, ``x_adv``, ``y_true``; deployed attacks
  such as the patch add ``source_index`` and ``modified``: ``x_adv[i]`` derives from
  ``x_clean[source_index[i]]``), stored compactly and read by :func:`read_examples`
  (``data.example_files``);
- Dioptra's, a tarball such as ``testing_adversarial_fgm.tar.gz`` made by its ``fgm`` entry
  point: one folder (``adv_testing``) of ``<label>/adv_<name>.png``. It holds no clean images.

A tarball is untrusted input: every member is checked before anything is written (no
absolute path, no ``..``, no link, no device or pipe), then it is extracted with
``tarfile``'s ``data`` filter into a temporary folder that is removed after reading.
"""

from __future__ import annotations

import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import RobustnessUsageError
from .example_files import read_examples

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")


@dataclass
class AdversarialSet:
    """Examples and where they came from; ``x_clean`` is None for a Dioptra tarball."""

    x_adv: np.ndarray
    y_true: np.ndarray  # labels of x_clean (of x_adv when there is no x_clean)
    x_clean: np.ndarray | None = None
    source_index: np.ndarray | None = None
    modified: np.ndarray | None = None
    origin: str = ""  # runs:/RUN_ID/ARTIFACT
    params: dict | None = None  # the logging run's params
    tags: dict | None = None

    @property
    def y_adversarial(self) -> np.ndarray:
        if self.x_clean is None or self.source_index is None:
            return self.y_true
        return self.y_true[self.source_index]


def is_tarball(artifact: str) -> bool:
    return artifact.lower().endswith(TARBALL_SUFFIXES)


def read_run_examples(client, run_id: str, artifact: str, class_names, input_shape) -> AdversarialSet:
    """``artifact`` of run ``run_id`` (any experiment), checked against this session's data:
    the images' shape and, for a tarball, the label folders."""
    from mlflow.exceptions import MlflowException

    origin = f"runs:/{run_id}/{artifact}"
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RobustnessUsageError(f"infer: no MLflow run {run_id!r} at {client.tracking_uri}") from None
    with tempfile.TemporaryDirectory(prefix="robustness-infer-") as tmp:
        try:
            local = Path(client.download_artifacts(run_id, artifact, tmp))
        except (MlflowException, OSError):
            listed = ", ".join(a.path for a in client.list_artifacts(run_id)) or "none"
            raise RobustnessUsageError(f"infer: run {run_id} has no artifact {artifact!r} (artifacts: {listed})") from None
        if is_tarball(artifact):
            found = read_dioptra_tarball(local, class_names, Path(tmp) / "extracted", tuple(input_shape))
        elif artifact.lower().endswith(".npz"):
            found = read_examples_npz(local)
        else:
            raise RobustnessUsageError(f"infer: artifact {artifact!r}: expected an .npz of ours or a Dioptra tarball "
                                       f"({', '.join(TARBALL_SUFFIXES)})")
    if tuple(found.x_adv.shape[1:]) != tuple(input_shape):
        raise RobustnessUsageError(f"infer: {origin} holds images of shape {tuple(found.x_adv.shape[1:])}; "
                                   f"this session's models take {tuple(input_shape)}")
    found.origin, found.params, found.tags = origin, dict(run.data.params), dict(run.data.tags)
    return found


def read_examples_npz(path: Path) -> AdversarialSet:
    """Our examples file; a deployed attack's x_adv rows map to x_clean through source_index."""
    try:
        arrays = read_examples(path)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise RobustnessUsageError(f"infer: {path.name} is not a readable .npz file ({exc})") from None
    missing = [k for k in ("x_clean", "x_adv", "y_true") if k not in arrays]
    if missing:
        raise RobustnessUsageError(f"infer: {path.name} lacks {', '.join(missing)}; expected x_clean, x_adv, y_true")
    found = AdversarialSet(arrays["x_adv"].astype(np.float32), arrays["y_true"].astype(np.int64),
                           arrays["x_clean"].astype(np.float32), arrays.get("source_index"), arrays.get("modified"))
    if found.source_index is None and len(found.x_adv) != len(found.x_clean):
        raise RobustnessUsageError(f"infer: {path.name} has {len(found.x_adv)} adversarial images for "
                                   f"{len(found.x_clean)} clean ones and no source_index to pair them")
    return found


# -- Dioptra's tarball ---------------------------------------------------------------------------
def check_members(tarball: tarfile.TarFile, name: str) -> None:
    """Refuse, naming it, any member that could write outside the extraction folder or is no plain
    file or folder: absolute paths, ``..``, symbolic and hard links, devices and pipes."""
    for member in tarball.getmembers():
        path = PurePosixPath(member.name)
        if member.name.startswith(("/", "\\")) or path.is_absolute() or (len(member.name) > 1 and member.name[1] == ":"):
            problem = "has an absolute path"
        elif ".." in path.parts or ".." in member.name.split("\\"):
            problem = "climbs out of the folder with '..'"
        elif member.issym() or member.islnk():
            problem = f"is a link (to {member.linkname!r})"
        elif member.isdev():
            problem = "is a device file or pipe"
        elif not (member.isfile() or member.isdir()):
            problem = "is not a plain file or folder"
        else:
            continue
        raise RobustnessUsageError(f"infer: {name}: member {member.name!r} {problem}; refused, nothing extracted")


def extract_tarball(path: Path, destination: Path) -> Path:
    """Every member checked, then extracted with the ``data`` filter into ``destination``."""
    try:
        tarball = tarfile.open(path)
    except (tarfile.TarError, OSError) as exc:
        raise RobustnessUsageError(f"infer: {path.name} is not a readable tarball ({exc})") from None
    with tarball:
        try:
            check_members(tarball, path.name)
            destination.mkdir(parents=True, exist_ok=True)
            tarball.extractall(destination, filter="data")
        except tarfile.FilterError as exc:  # a second line of defence: the checks above should catch it
            raise RobustnessUsageError(f"infer: {path.name}: {exc}; refused") from None
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:  # truncated or corrupt past its header
            raise RobustnessUsageError(f"infer: {path.name} could not be read to its end, truncated or corrupt "
                                       f"({type(exc).__name__}: {exc})") from None
    return destination


def read_dioptra_tarball(path: Path, class_names, destination: Path, input_shape) -> AdversarialSet:
    """Dioptra's ``fgm`` output: ``<folder>/<label>/<image>``; labels are the data's class names. Like
    Dioptra's ``infer`` (its ``image_size``), images are brought to the models' input shape."""
    root = extract_tarball(path, destination)
    folders = [d for d in root.iterdir() if d.is_dir()]
    if len(folders) == 1 and all(not f.is_file() for f in folders[0].iterdir()):
        root = folders[0]  # Dioptra archives the folder itself (arcname adv_testing)
    names = list(class_names)
    images, labels = [], []
    for label_dir in sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name):
        if label_dir.name not in names:
            raise RobustnessUsageError(f"infer: {path.name}: folder {label_dir.name!r} is not a class of this "
                                       f"session's data ({', '.join(names)})")
        for image in sorted(p for p in label_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            images.append(_read_image(image, path.name, input_shape))
            labels.append(names.index(label_dir.name))
    if not images:
        raise RobustnessUsageError(f"infer: {path.name} holds no <label>/<image> files")
    return AdversarialSet(np.stack(images), np.array(labels, dtype=np.int64))


def _read_image(path: Path, tarball: str, input_shape) -> np.ndarray:
    """An image as float32 HWC in [0, 1], in the models' channels and size (bilinear resize)."""
    from PIL import Image, UnidentifiedImageError

    height, width, channels = input_shape
    try:
        with Image.open(path) as img:
            converted = img.convert("L" if channels == 1 else "RGB")
            if converted.size != (width, height):
                converted = converted.resize((width, height), Image.BILINEAR)
            pixels = np.asarray(converted, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise RobustnessUsageError(f"infer: {tarball}: {path.name} is not a readable image ({exc})") from None
    return pixels[..., None] if pixels.ndim == 2 else pixels


def write_dioptra_tarball(folder: Path, tarball: Path, images: np.ndarray, labels: np.ndarray, class_names) -> Path:
    """Dioptra's layout, for tests and for handing our examples to Dioptra's ``infer``:
    ``adv_testing/<label>/adv_<i>.png`` archived as the folder itself."""
    from PIL import Image

    root = folder / "adv_testing"
    for i, (image, label) in enumerate(zip(images, labels)):
        target = root / str(class_names[int(label)]) / f"adv_{i:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        pixels = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(target)
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(root, arcname=root.name)
    return tarball


__all__ = ["AdversarialSet", "check_members", "extract_tarball", "is_tarball", "read_examples", "read_run_examples",
           "write_dioptra_tarball"]
