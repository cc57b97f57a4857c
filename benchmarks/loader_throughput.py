"""Images per second of the ImageFolder training pipeline at 224 px, per data-loader worker.

What each training image costs a loader worker (``snn_lats.data``): PIL decodes the JPEG and
converts it to RGB, then ``train_transform(224)``: RandomResizedCrop(224), RandomHorizontalFlip,
ToTensor and Normalize; ``collate`` stacks the batch. Two measurements:

- the phases, in this process, one image at a time: decode, crop (RandomResizedCrop), the rest
  (flip, ToTensor, Normalize), in ms per image;
- the whole loader, ``build_loaders`` with ``-j`` workers, in images/s (after the first batch,
  which includes starting the workers), and images/s per worker.

A GPU needs ``its images/s ÷ images/s per worker`` workers. The images are JPEGs written here, of
ImageNet's typical size (500×375, about 110 KB at quality 90: smooth random fields plus noise), or
the images of ``--data-path`` (an ImageFolder root: its ``train/`` if there is one).

    .venv/bin/python benchmarks/loader_throughput.py                   # 512 images, -j 0 1 2
    .venv/bin/python benchmarks/loader_throughput.py --data-path /data/imagenet -j 8 16
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from snn_lats.data import ImageFolderDataset, build_loaders, train_transform


def write_jpegs(root: Path, count: int, width: int, height: int, quality: int, seed: int = 0) -> None:
    """``count`` JPEGs in two class folders: a low-frequency random field (photo-like content) plus
    pixel noise (texture), so that their size and decoding cost are those of photographs."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.uniform(0, 255, size=(height // 25 + 1, width // 25 + 1, 3)).astype(np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
        pixels = np.clip(field + rng.normal(0, 20, size=field.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=quality)


def phase_times(dataset: ImageFolderDataset, count: int) -> dict[str, float]:
    """Median ms per image of decoding, cropping and the rest of the transform, in this process."""
    crop, rest = dataset.transform.transforms[0], dataset.transform.transforms[1:]
    decode_ms, crop_ms, rest_ms = [], [], []
    for path, _ in dataset.samples[:count]:
        t0 = time.perf_counter()
        image = dataset.loader(path)
        t1 = time.perf_counter()
        image = crop(image)
        t2 = time.perf_counter()
        for transform in rest:
            image = transform(image)
        t3 = time.perf_counter()
        decode_ms.append(t1 - t0)
        crop_ms.append(t2 - t1)
        rest_ms.append(t3 - t2)
    return {
        name: 1e3 * statistics.median(v) for name, v in (("decode", decode_ms), ("crop", crop_ms), ("rest", rest_ms))
    }


def loader_rate(dataset: ImageFolderDataset, batch_size: int, workers: int, epochs: int) -> float:
    """Images/s of the training loader over ``epochs`` passes, after its first batch."""
    loader, _ = build_loaders(dataset, dataset, batch_size, workers)
    images, seconds = 0, 0.0
    for _ in range(epochs):
        batches = iter(loader)
        next(batches)  # starts the workers
        start = time.perf_counter()
        for batch in batches:
            images += batch.images.shape[0]
        seconds += time.perf_counter() - start
    return images / seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-path", help="an ImageFolder root to read instead of generated JPEGs")
    parser.add_argument("--images", type=int, default=512, help="generated JPEGs (default 512)")
    parser.add_argument("--image-width", type=int, default=500)
    parser.add_argument("--image-height", type=int, default=375)
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the generated images")
    parser.add_argument("-b", "--batch-size", type=int, default=32)
    parser.add_argument("-j", "--workers", type=int, nargs="+", default=[0, 1, 2], help="loader workers to try")
    parser.add_argument("--epochs", type=int, default=2, help="passes over the images per worker count")
    parser.add_argument("--crop-size", type=int, default=224)
    args = parser.parse_args(argv)
    if min(args.workers) < 0:
        parser.error("--workers must be >= 0")

    torch.set_num_threads(1)  # what DataLoader gives each worker; here for the in-process phases
    with tempfile.TemporaryDirectory() as tmp:
        if args.data_path:
            root = Path(args.data_path)
            root = root / "train" if (root / "train").is_dir() else root
        else:
            root = Path(tmp)
            write_jpegs(root, args.images, args.image_width, args.image_height, args.quality)
        dataset = ImageFolderDataset(root, train_transform(args.crop_size))
        sizes = [os.path.getsize(path) for path, _ in dataset.samples[:256]]
        with Image.open(dataset.samples[0][0]) as first:
            shape = f"{first.width}x{first.height}"
        print(
            f"{len(dataset)} images ({'from ' + str(root) if args.data_path else 'generated'}; first {shape}, "
            f"mean {statistics.mean(sizes) / 1024:.0f} KB), crop {args.crop_size}, batch {args.batch_size}; "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
        )
        phases = phase_times(dataset, min(len(dataset), 128))
        total = sum(phases.values())
        print(
            "per image, one process: "
            + ", ".join(f"{name} {ms:.2f} ms" for name, ms in phases.items())
            + f"; {total:.2f} ms in all = {1e3 / total:.0f} images/s"
        )
        print(f"{'workers':>7} {'images/s':>9} {'per worker':>11}")
        for workers in args.workers:
            rate = loader_rate(dataset, args.batch_size, workers, args.epochs)
            per = f"{rate / workers:11.0f}" if workers else f"{'(main)':>11}"
            print(f"{workers:>7} {rate:9.0f} {per}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
