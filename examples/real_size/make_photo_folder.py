"""An ImageNet-style Dioptra folder for a self-contained demo: 224x224 RGB JPEGs, one folder a class.

    python examples/real_size/make_photo_folder.py photos --train 20 --test 10

Crops of scikit-learn's two sample photographs (classes ``china`` and ``flower``), jittered in position,
mirror, brightness and JPEG quality: ``photos/training/<class>/*.jpg`` and ``photos/testing/<class>/*.jpg``.
"""

from __future__ import annotations

import argparse
import sys

from pytest_robustness.data.folder_builders import PHOTO_SIZE, photo_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", help="the folder to create")
    parser.add_argument("--train", type=int, default=20, help="training images per class")
    parser.add_argument("--test", type=int, default=10, help="test images per class")
    parser.add_argument("--size", type=int, default=PHOTO_SIZE, help="side of the square images, in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = photo_folder(args.dest, {"training": args.train, "testing": args.test}, size=args.size, seed=args.seed)
    print(f"{root}: {2 * args.train} training and {2 * args.test} test images, {args.size}x{args.size} RGB JPEG")
    return 0


if __name__ == "__main__":
    sys.exit(main())
