"""How much ``train.cache_compress`` saves: sample-cache entries of real decoded files, plain
and compressed (:mod:`polymodal.data.cache_codec`), with the time to compress and decompress.

Entries: HAM10000 photographs decoded at 224 × 224 (ImageNet-normalised float32, the resized
path), the same photographs at their own 150 × 200 size (the copies in shared/data; kept as 8-bit
pixels, exact), and
AdrenalMNIST3D 64³ volumes as float32 in [0, 1]. Reads ``../shared/data`` beside the checkout
(or ``--data``); writes ``bench/results/cache_compression.md``. Takes well under a minute.

Usage::

    python bench/cache_compression.py [--count 24]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from _common import load_average, machine, table, write_report
from polymodal.data.cache_codec import decode, encode
from polymodal.data.pixel_store import pack_pixels
from polymodal.data.readers import read_image

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "cache_compression.md"


def entries(data: Path, count: int) -> dict[str, list[dict[str, torch.Tensor]]]:
    images = sorted((data / "ham10000" / "images").glob("*.jpg"))[:count]
    resized = SimpleNamespace(channels=3, size=(224, 224), normalize="imagenet", max_pixels=10**8)
    native = SimpleNamespace(channels=3, size=(150, 200), normalize="imagenet", max_pixels=10**8)
    with np.load(data / "adrenalmnist3d" / "adrenalmnist3d_64.npz") as archive:
        volumes = archive["train_images"][:count].astype(np.float32) / 255.0
    return {
        "HAM10000 224² float32": [
            {"pixels": torch.from_numpy(read_image(p, resized))} for p in images
        ],
        "HAM10000 150×200 8-bit": [
            pack_pixels(torch.from_numpy(read_image(p, native)), native) for p in images
        ],
        "AdrenalMNIST3D 64³ float32": [{"voxels": torch.from_numpy(v[None])} for v in volumes],
    }


def measure(kind: list[dict[str, torch.Tensor]]) -> list[str]:
    plain = sum(len(encode(e, compress=False)) for e in kind)
    start = time.perf_counter()
    packed = [encode(e, compress=True) for e in kind]
    write = (time.perf_counter() - start) / len(kind)
    start = time.perf_counter()
    back = [decode(p) for p in packed]
    read = (time.perf_counter() - start) / len(kind)
    exact = all(torch.equal(b[k], e[k]) for b, e in zip(back, kind, strict=True) for k in e)
    small = sum(len(p) for p in packed)
    return [
        f"{plain / len(kind) / 1e3:,.0f}",
        f"{small / len(kind) / 1e3:,.0f}",
        f"{plain / small:.2f}×",
        f"{write * 1e3:.1f}",
        f"{read * 1e3:.1f}",
        "yes" if exact else "NO",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--count", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = ["entries", "plain kB", "compressed kB", "ratio", "compress ms", "read ms", "exact"]
    rows = [[name, *measure(kind)] for name, kind in entries(args.data, args.count).items()]
    lines = [
        "# Sample-cache compression (`train.cache_compress: true`)",
        "",
        f"Machine: {machine(1)}; load average {load_average():.1f} at the start.",
        "Command: `python bench/cache_compression.py`",
        "",
        f"{args.count} entries of each kind; sizes and times are per entry (the safetensors "
        "file as written); 'read ms' is decompressing and loading; 'exact': every tensor "
        "comes back bit for bit. Codec: byte-shuffle by 4, zlib level 1.",
        "",
        *table(header, rows, align="lrrrrrl"),
        "",
    ]
    print(write_report(RESULTS, lines))


if __name__ == "__main__":
    main()
