"""Lay a local copy of Fruits360 out as a Dioptra folder, optionally with fewer classes and images.

    python examples/real_size/make_fruits360_folder.py fruits-360 fruits --classes 5 --per-class 40

Fruits360 (``Training/<class>/*.jpg``, ``Test/<class>/*.jpg``, 100x100 RGB) becomes
``fruits/training/<class>/`` and ``fruits/testing/<class>/``; images are hard-linked where the
filesystem allows (no copy of the data set), else copied.
"""

from __future__ import annotations

import argparse
import sys

from pytest_robustness.data.folder_builders import fruits360_folder
from pytest_robustness.errors import RobustnessUsageError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the Fruits360 folder holding Training/ and Test/")
    parser.add_argument("dest", help="the Dioptra folder to create")
    parser.add_argument("--classes", type=int, default=None, help="keep the first N classes (sorted by name)")
    parser.add_argument("--class", dest="names", action="append", default=None,
                        help="keep this class (repeatable); --classes then limits these")
    parser.add_argument("--per-class", type=int, default=None, help="keep the first N images of each class and split")
    parser.add_argument("--copy", action="store_true", help="copy the images instead of hard-linking them")
    args = parser.parse_args(argv)
    try:
        root = fruits360_folder(args.source, args.dest, classes=args.names, max_classes=args.classes,
                                per_class=args.per_class, copy=args.copy)
    except RobustnessUsageError as error:
        parser.exit(2, f"error: {error}\n")
    counts = {split: sum(1 for p in (root / split).rglob("*") if p.is_file()) for split in ("training", "testing")}
    classes = sorted(p.name for p in (root / "training").iterdir() if p.is_dir())
    print(f"{root}: {len(classes)} classes, {counts['training']} training and {counts['testing']} test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
