"""Data sets and loaders: ImageFolder checks and transforms, the digits set, MNIST/Fashion-MNIST
from IDX files and CIFAR from its binary files (all written here in the real formats), sharded loading."""

from __future__ import annotations

import gzip
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from snn_lats._torchvision import datasets
from snn_lats.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MNIST_FILES,
    DataError,
    DigitsDataset,
    build_datasets,
    build_loaders,
    collate,
    read_idx,
    set_epoch,
)
from snn_lats.engine.recipe import TrainConfig


def data(**fields) -> TrainConfig:
    """A configuration holding the data fields given (build_datasets reads a configuration)."""
    if fields.get("data_path") is not None:
        fields["data_path"] = str(fields["data_path"])
    return TrainConfig(**fields)


def write_image_folder(root, classes=("cat", "dog"), per_class=3, size=(20, 14), splits=("train", "val")):
    """A tiny ImageNet-style tree of real PNG files; pixel values differ per image."""
    rng = np.random.default_rng(0)
    for split in splits:
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                array = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(array).save(folder / f"{i}.png")
    return root


# ---------------------------------------------------------------------------------------- digits


def test_digits_split_is_stratified_disjoint_and_complete():
    from sklearn.datasets import load_digits

    raw = load_digits()
    train, val = DigitsDataset("train"), DigitsDataset("val")
    assert len(train) + len(val) == 1797
    # Every fifth image of each class: ceil(count / 5) per class.
    counts = np.bincount(raw.target, minlength=10)
    assert len(val) == sum(-(-c // 5) for c in counts)
    assert torch.equal(torch.bincount(val.targets, minlength=10), torch.tensor([-(-c // 5) for c in counts]))
    # Disjoint: no validation image equals a training image of the same pixels and label.
    train_keys = {(tuple(img[0].flatten().tolist()), int(t)) for img, t in zip(train.images, train.targets)}
    overlap = sum((tuple(img[0].flatten().tolist()), int(t)) in train_keys for img, t in zip(val.images, val.targets))
    duplicates_in_raw = len(raw.images) - len({(r.tobytes(), int(t)) for r, t in zip(raw.images, raw.target)})
    assert overlap <= duplicates_in_raw


def test_digits_pixels_at_native_size_are_the_scaled_raw_digits():
    from sklearn.datasets import load_digits

    raw = load_digits()
    val = DigitsDataset("val", image_size=8)
    # The first validation image is the first image of class 0 in the raw data.
    first_zero = np.flatnonzero(raw.target == 0)[0]
    image, target = val[int(np.flatnonzero(val.targets.numpy() == 0)[0])]
    expected = torch.tensor(raw.images[first_zero] / 16.0 * 2 - 1, dtype=torch.float32)
    assert target == 0 and image.shape == (3, 8, 8)
    for c in range(3):
        torch.testing.assert_close(image[c], expected)


def test_digits_augmentation_only_translates():
    torch.manual_seed(0)
    train = DigitsDataset("train", image_size=32, augment=True)
    plain = DigitsDataset("train", image_size=32)
    image, _ = train[5]
    reference = plain.images[5]
    shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)]
    padded = torch.nn.functional.pad(reference, (4, 4, 4, 4), value=-1.0)
    matches = [torch.equal(image, padded[:, 4 + dy : 36 + dy, 4 + dx : 36 + dx]) for dy, dx in shifts]
    assert any(matches)


# ----------------------------------------------------------------------------------- imagefolder


def test_imagefolder_transforms_match_pil_resize_and_center_crop(tmp_path):
    root = write_image_folder(tmp_path)
    train_set, val_set, num_classes = build_datasets(
        data(dataset="imagefolder", data_path=root, train_crop_size=8, val_resize_size=10, val_crop_size=8)
    )
    assert num_classes == 2 and len(train_set) == 6 and len(val_set) == 6
    assert train_set.classes == ["cat", "dog"]
    image, target = val_set[4]  # sorted: cat/0..2, dog/0..2
    assert target == 1
    # Oracle: shorter side to 10 with PIL bilinear (20x14 -> 14x10), centre 8x8 crop, normalise.
    pil = Image.open(root / "val" / "dog" / "1.png").convert("RGB").resize((14, 10), Image.BILINEAR)
    array = np.asarray(pil, dtype=np.float32)[1:9, 3:11] / 255.0
    expected = (torch.from_numpy(array).permute(2, 0, 1) - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(
        IMAGENET_STD
    )[:, None, None]
    torch.testing.assert_close(image, expected, atol=1e-5, rtol=0)
    train_image, _ = train_set[0]
    assert train_image.shape == (3, 8, 8)


@pytest.mark.parametrize("case", ["missing", "not_a_dir", "no_train", "empty_val", "empty_class", "mismatch"])
def test_imagefolder_bad_layouts_raise_data_error(tmp_path, case):
    root = tmp_path / "data"
    if case == "missing":
        pass
    elif case == "not_a_dir":
        root.write_text("x")
    elif case == "no_train":
        write_image_folder(root, splits=("val",))
    elif case == "empty_val":
        write_image_folder(root, splits=("train",))
        (root / "val").mkdir()
    elif case == "empty_class":
        write_image_folder(root)
        (root / "train" / "eel").mkdir()
        (root / "train" / "eel" / "notes.txt").write_text("no images here")
    elif case == "mismatch":
        write_image_folder(root)
        write_image_folder(tmp_path / "other", classes=("cow",), splits=("val",))
        (tmp_path / "other" / "val" / "cow").rename(root / "val" / "cow")
    with pytest.raises(DataError) as info:
        build_datasets(data(dataset="imagefolder", data_path=root))
    message = str(info.value)
    assert str(root) in message
    if case == "empty_class":
        assert "eel" in message
    if case == "mismatch":
        assert "cow" in message


def test_missing_data_path_argument():
    with pytest.raises(DataError, match="--data-path"):
        build_datasets(data(dataset="imagefolder"))
    with pytest.raises(ValueError, match="dataset must be one of"):
        build_datasets(data(dataset="cifar"))


def test_unreadable_image_is_skipped_and_counted_or_fails(tmp_path):
    root = write_image_folder(tmp_path)
    (root / "train" / "cat" / "1.png").write_bytes(b"this is not a png")
    train_set, _, _ = build_datasets(
        data(dataset="imagefolder", data_path=root, train_crop_size=8, val_resize_size=8, val_crop_size=8)
    )
    with pytest.warns(RuntimeWarning, match="1.png"):
        batch = collate([train_set[i] for i in range(len(train_set))])
    assert batch.skipped == 1 and batch.images.shape == (5, 3, 8, 8)
    assert batch.targets.tolist() == [0, 0, 1, 1, 1]

    strict, _, _ = build_datasets(data(dataset="imagefolder", data_path=root, bad_images="fail"))
    with pytest.raises(DataError, match="unreadable image"):
        strict[1]


# ---------------------------------------------------------------------------------------- loaders


def _indices(loader):
    return [t.tolist() for _, t, _ in loader]


class _IndexSet(torch.utils.data.Dataset):
    """Target = index, so batches show which samples were drawn."""

    def __len__(self):
        return 20

    def __getitem__(self, i):
        return torch.zeros(1), i


def test_two_shards_cover_the_one_process_order_batch_by_batch():
    data = _IndexSet()
    single, _ = build_loaders(data, data, batch_size=4, seed=3)
    shards = [build_loaders(data, data, batch_size=2, rank=r, world_size=2, seed=3)[0] for r in range(2)]
    for epoch in (0, 1):
        for loader in [single, *shards]:
            set_epoch(loader, epoch, seed=3)
        one = _indices(single)
        two = list(zip(*[_indices(s) for s in shards]))
        assert sorted(sum(one, [])) == list(range(20))
        # Global batch i of the 2-process run holds the same samples as batch i of the 1-process run.
        assert [sorted(a + b) for a, b in two] == [sorted(b) for b in one]
    set_epoch(single, 0, seed=3)
    epoch0 = _indices(single)
    set_epoch(single, 1, seed=3)
    assert _indices(single) != epoch0  # reshuffled each epoch


def test_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch():
    data = _IndexSet()
    loader, val = build_loaders(data, data, batch_size=3, seed=7)
    set_epoch(loader, 2, seed=7)
    full = _indices(loader)
    torch.manual_seed(123)  # the global RNG must not matter
    other, _ = build_loaders(data, data, batch_size=3, seed=7)
    set_epoch(other, 2, seed=7, skip_batches=2)
    assert _indices(other) == full[2:]
    assert len(other) == len(full) - 2
    assert sum(_indices(val), []) == list(range(20))  # validation is not shuffled


def test_loader_arguments_are_checked():
    data = _IndexSet()
    with pytest.raises(ValueError, match="batch_size"):
        build_loaders(data, data, batch_size=0)
    with pytest.raises(ValueError, match="workers"):
        build_loaders(data, data, batch_size=1, workers=-1)


# ------------------------------------------------------------------------ MNIST and Fashion-MNIST

FASHION_CLASSES = [  # the label names of Fashion-MNIST's README (zalandoresearch/fashion-mnist)
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An IDX file as LeCun's format defines it: 0, 0, type 0x08 (ubyte), ndim, big-endian sizes, bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    content = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(content)
    else:
        path.write_bytes(content)
    return path


def write_mnist(root: Path, n_train: int = 30, n_val: int = 20, gz: bool = True, seed: int = 0) -> dict:
    """The four MNIST-family files with random pixels and labels 0..9 in turn; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {}
    suffix = ".gz" if gz else ""
    for split, n, (images, labels) in (("train", n_train, MNIST_FILES["train"]), ("val", n_val, MNIST_FILES["val"])):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / f"{images}{suffix}", x)
        write_idx(root / f"{labels}{suffix}", y)
        arrays[split] = (x, y)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_agrees_with_torchvision_reader(tmp_path, gz):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    x = np.random.default_rng(1).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    y = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    images = write_idx(tmp_path / ("i.gz" if gz else "i"), x)
    labels = write_idx(tmp_path / ("l.gz" if gz else "l"), y)
    plain_images, plain_labels = write_idx(tmp_path / "pi", x), write_idx(tmp_path / "pl", y)
    assert torch.equal(read_idx(images), read_image_file(str(plain_images)))
    assert torch.equal(read_idx(labels).long(), read_label_file(str(plain_labels)))


def test_read_idx_refuses_foreign_and_truncated_files(tmp_path):
    (tmp_path / "text").write_text("not an idx file at all")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "text")
    good = write_idx(tmp_path / "x", np.zeros((4, 28, 28), dtype=np.uint8)).read_bytes()
    (tmp_path / "short").write_bytes(good[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "bad.gz")


@pytest.mark.parametrize("dataset", ["fashion-mnist", "mnist"])
def test_mnist_family_items_are_the_normalised_pixels(tmp_path, dataset):
    arrays = write_mnist(tmp_path)
    train, val, classes = build_datasets(data(dataset=dataset, data_path=tmp_path, augment=False))
    mean, std = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}[dataset]
    assert classes == 10 and len(train) == 30 and len(val) == 20
    x, y = arrays["val"]
    for i in (0, 7, 19):
        image, target = val[i]
        assert target == int(y[i]) and image.shape == (3, 28, 28)
        expected = (torch.tensor(x[i], dtype=torch.float32) / 255 - mean) / std
        for c in range(3):
            torch.testing.assert_close(image[c], expected)
    if dataset == "fashion-mnist":
        assert val.classes == FASHION_CLASSES
        assert isinstance(val, datasets.FashionMNIST)
    else:
        assert isinstance(val, datasets.MNIST) and not isinstance(val, datasets.FashionMNIST)


def test_mnist_resize_matches_pil_bilinear(tmp_path):
    arrays = write_mnist(tmp_path)
    _, val, _ = build_datasets(data(dataset="fashion-mnist", data_path=tmp_path, image_size=14), train=False)
    mean, std = 0.2860, 0.3530
    x, _ = arrays["val"]
    for i in (0, 5):
        pil = np.asarray(Image.fromarray(x[i]).resize((14, 14), Image.BILINEAR), dtype=np.float32) / 255
        ours = val[i][0][0] * std + mean
        assert ours.shape == (14, 14)
        # PIL rounds to whole grey levels; the filters are the same (antialiased bilinear)
        torch.testing.assert_close(ours, torch.from_numpy(pil), atol=1.5 / 255, rtol=0)


def test_fashion_mnist_augmentation_translates_or_mirrors_only(tmp_path):
    write_mnist(tmp_path)
    cfg = data(dataset="fashion-mnist", data_path=tmp_path, augment=True)
    train, _, _ = build_datasets(cfg)
    plain, _, _ = build_datasets(data(dataset="fashion-mnist", data_path=tmp_path, augment=False))
    background = -0.2860 / 0.3530
    torch.manual_seed(0)
    for i in range(6):
        augmented, base = train[i][0][0], plain[i][0][0]
        padded = torch.nn.functional.pad(base, (3, 3, 3, 3), value=background)
        candidates = [
            padded[dy : dy + 28, dx : dx + 28].flip(-1) if flip else padded[dy : dy + 28, dx : dx + 28]
            for dy in range(7)
            for dx in range(7)
            for flip in (False, True)
        ]
        assert any(torch.allclose(augmented, c) for c in candidates)


def test_torchvision_download_layout_with_uncompressed_files_is_found(tmp_path):
    arrays = write_mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    _, val, _ = build_datasets(data(dataset="fashion-mnist", data_path=tmp_path), train=False)
    assert len(val) == 20 and val[3][1] == int(arrays["val"][1][3])


def test_missing_idx_files_name_the_path_and_both_ways_to_get_them(tmp_path, monkeypatch):
    import snn_lats.data.datasets as data_module

    with pytest.raises(DataError) as error:
        build_datasets(data(dataset="fashion-mnist", data_path=tmp_path))
    message = str(error.value)
    assert str(tmp_path) in message and "t10k-images-idx3-ubyte(.gz)" in message
    assert "apt-get install dataset-fashion-mnist" in message and "download=True" in message
    with pytest.raises(DataError) as error:
        build_datasets(data(dataset="mnist", data_path=tmp_path))
    assert "download=True" in str(error.value) and "apt-get" not in str(error.value)  # no such package
    # no --data-path, and no system package: the same two ways
    monkeypatch.setattr(data_module, "FASHION_MNIST_SYSTEM_PATH", str(tmp_path / "absent"))
    with pytest.raises(DataError, match="needs --data-path.*apt-get install dataset-fashion-mnist.*download=True"):
        build_datasets(data(dataset="fashion-mnist"))
    with pytest.raises(DataError, match="mnist needs --data-path"):
        build_datasets(data(dataset="mnist"))


def test_fashion_mnist_defaults_to_the_system_package_folder(tmp_path, monkeypatch):
    import snn_lats.data.datasets as data_module

    write_mnist(tmp_path / "system")
    monkeypatch.setattr(data_module, "FASHION_MNIST_SYSTEM_PATH", str(tmp_path / "system"))
    train, val, _ = build_datasets(data(dataset="fashion-mnist"))
    assert (len(train), len(val)) == (30, 20) and val.root == str(tmp_path / "system")


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="the system package dataset-fashion-mnist is not installed")
def test_the_real_fashion_mnist_set():
    train, val, classes = build_datasets(data(dataset="fashion-mnist", augment=False))
    assert (len(train), len(val), classes) == (60000, 10000, 10)
    # the published split: 6,000 training and 1,000 test images per class
    assert torch.equal(torch.bincount(train.targets), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(val.targets), torch.full((10,), 1000))
    # the normalisation constants are the training set's own pixel mean and std
    pixels = train.data.double() / 255
    assert abs(float(pixels.mean()) - 0.2860) < 5e-4 and abs(float(pixels.std()) - 0.3530) < 5e-4
    assert abs(float(train.images.mean())) < 2e-3 and abs(float(train.images.std()) - 1) < 2e-3


# ------------------------------------------------------------------------------------------ CIFAR


def write_cifar(root: Path, dataset: str = "cifar10", per_file: int = 4, archive: bool = False, seed: int = 0):
    """The binary distribution's files: records of label byte(s) then the R, G and B planes."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-10-batches-bin" if dataset == "cifar10" else "cifar-100-binary")
    folder.mkdir(parents=True)
    if dataset == "cifar10":
        files = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "val": ["test_batch.bin"]}
        (folder / "batches.meta.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n\n")
        classes = 10
    else:
        files = {"train": ["train.bin"], "val": ["test.bin"]}
        (folder / "fine_label_names.txt").write_text("\n".join(f"fine{i}" for i in range(100)) + "\n")
        (folder / "coarse_label_names.txt").write_text("\n".join(f"coarse{i}" for i in range(20)) + "\n")
        classes = 100
    images = {"train": [], "val": []}
    labels = {"train": [], "val": []}
    for split, names in files.items():
        for name in names:
            chunk = bytearray()
            for _ in range(per_file):
                hwc = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                label = int(rng.integers(0, classes))
                prefix = bytes([label]) if dataset == "cifar10" else bytes([label // 5, label])
                chunk += prefix + hwc.transpose(2, 0, 1).tobytes()  # R plane, G plane, B plane
                images[split].append(hwc)
                labels[split].append(label)
            (folder / name).write_bytes(bytes(chunk))
    if archive:
        with tarfile.open(
            root / ("cifar-10-binary.tar.gz" if dataset == "cifar10" else "cifar-100-binary.tar.gz"), "w:gz"
        ) as tar:
            tar.add(folder, arcname=folder.name)
        shutil.rmtree(folder)
    return images, labels


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
@pytest.mark.parametrize("archive", [False, True])
def test_cifar_binary_records_become_torchvision_images(tmp_path, dataset, archive):
    images, labels = write_cifar(tmp_path, dataset, archive=archive)
    path = tmp_path / ("cifar-10-binary.tar.gz" if dataset == "cifar10" else "cifar-100-binary.tar.gz")
    train, val, classes = build_datasets(data(dataset=dataset, data_path=path if archive else tmp_path, augment=False))
    assert classes == (10 if dataset == "cifar10" else 100)
    assert isinstance(val, datasets.CIFAR100 if dataset == "cifar100" else datasets.CIFAR10)
    assert len(train) == len(labels["train"]) and len(val) == len(labels["val"])
    assert train.targets == labels["train"] and val.classes[3] == ("class3" if dataset == "cifar10" else "fine3")
    # the published per-channel statistics of each training set (the real files are not here to
    # recompute them), applied to the record's own bytes decoded by hand
    mean, std = {
        "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    }[dataset]
    for i in (0, len(val) - 1):
        assert np.array_equal(val.data[i], images["val"][i])
        image, target = val[i]
        chw = torch.tensor(images["val"][i], dtype=torch.float32).permute(2, 0, 1) / 255
        expected = (chw - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
        assert target == labels["val"][i]
        torch.testing.assert_close(image, expected)


def test_cifar_python_version_and_truncated_files_are_refused(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"\x80\x04pickle")
    with pytest.raises(DataError, match="binary distribution.*python version"):
        build_datasets(data(dataset="cifar10", data_path=tmp_path))
    write_cifar(tmp_path / "short")
    test_file = tmp_path / "short" / "cifar-10-batches-bin" / "test_batch.bin"
    test_file.write_bytes(test_file.read_bytes()[:-5])
    with pytest.raises(DataError, match="whole 3073-byte records"):
        build_datasets(data(dataset="cifar10", data_path=tmp_path / "short"), train=False)
    with pytest.raises(DataError, match="--data-path is required"):
        build_datasets(data(dataset="cifar100"))


# ------------------------------------------------------------------------ subsets and class counts


def test_train_subset_is_the_first_images_of_every_class(tmp_path):
    arrays = write_mnist(tmp_path, n_train=40)
    y = arrays["train"][1]
    train, val, _ = build_datasets(data(dataset="mnist", data_path=tmp_path, train_subset=13, augment=False))
    # brute force: 13 = 1 per class for the 10 classes, plus one more for classes 0, 1, 2
    expected = sorted(int(i) for c in range(10) for i in np.flatnonzero(y == c)[: 1 + (c < 3)])
    assert train.indices == expected and len(val) == 20
    assert [train[k][1] for k in range(len(train))] == [int(y[i]) for i in expected]
    with pytest.raises(DataError, match="exceeds the 40 training images"):
        build_datasets(data(dataset="mnist", data_path=tmp_path, train_subset=41))
    # 35 images ask 4 of each of classes 0..4; this set has one image of class 1
    write_mnist(tmp_path / "skewed", n_train=40)
    skewed = tmp_path / "skewed" / "train-labels-idx1-ubyte.gz"
    write_idx(skewed, np.array([0] * 31 + list(range(1, 10)), dtype=np.uint8))
    with pytest.raises(DataError, match="needs 4 training images of class 1; the set has 1"):
        build_datasets(data(dataset="mnist", data_path=tmp_path / "skewed", train_subset=35))
    digits_train, _, _ = build_datasets(data(dataset="digits", image_size=8, train_subset=20))
    assert torch.equal(torch.bincount(torch.tensor([digits_train[k][1] for k in range(20)])), torch.full((10,), 2))


def test_num_classes_must_match_the_data_set(tmp_path):
    with pytest.raises(DataError, match="--num-classes 5 does not match the 10 classes"):
        build_datasets(data(dataset="digits", num_classes=5))
    assert build_datasets(data(dataset="digits", num_classes=10), train=False)[2] == 10


def test_mixup_mixes_each_image_with_its_neighbour_and_the_targets_alike():
    # MixUp's contract (Zhang et al. 2018, as torchvision applies it to a batch): image i becomes
    # λ·x_i + (1 − λ)·x_{i−1} and its target λ·onehot(y_i) + (1 − λ)·onehot(y_{i−1}), one λ per batch.
    from snn_lats.data import batch_mixing

    assert batch_mixing(0.0, 0.0, 5) is None
    torch.manual_seed(0)
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    mixed, targets = batch_mixing(0.4, 0.0, 5)(images, labels)
    lam = float(targets[0, 0])
    assert 0 < lam < 1 and targets.shape == (4, 5)
    for i in range(4):
        expected = torch.zeros(5)
        expected[labels[i]] += lam
        expected[labels[i - 1]] += 1 - lam
        torch.testing.assert_close(targets[i], expected)
        torch.testing.assert_close(mixed[i], lam * images[i] + (1 - lam) * images[i - 1])


def test_cutmix_pastes_one_box_and_weighs_the_targets_by_its_area():
    from snn_lats.data import batch_mixing

    torch.manual_seed(3)
    images, labels = torch.rand(4, 1, 10, 10), torch.tensor([4, 3, 2, 1])
    mixed, targets = batch_mixing(0.0, 1.0, 5)(images, labels)
    pasted = (mixed != images).any(0).any(0)  # the box, where image i shows image i-1
    for i in range(4):
        box = mixed[i, 0][pasted]
        torch.testing.assert_close(box, images[i - 1, 0][pasted])
        kept = 1 - float(pasted.sum()) / 100
        assert targets[i, labels[i]] == pytest.approx(kept) and targets[i].sum() == pytest.approx(1.0)
    both = batch_mixing(0.8, 1.0, 5)
    assert type(both).__name__ == "RandomChoice"  # one of the two per batch, as torchvision's reference


def test_randaugment_is_in_the_image_folder_training_transform_only_when_asked():
    from snn_lats.data import train_transform

    names = [type(t).__name__ for t in train_transform(32, "ra").transforms]
    assert names[:3] == ["RandomResizedCrop", "RandomHorizontalFlip", "RandAugment"]
    assert "RandAugment" not in [type(t).__name__ for t in train_transform(32).transforms]
    with pytest.raises(ValueError, match="auto_augment"):
        train_transform(32, "aa")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dataset="digits", auto_augment="ra"), "image folder"),
        (dict(dataset="dvs128-gesture", T=4, mixup_alpha=0.2), "frame sequences"),
        (dict(dataset="digits", cutmix_alpha=-1.0), "cutmix_alpha must be a number >= 0"),
    ],
)
def test_augmentation_options_are_refused_where_they_do_not_apply(kwargs, message):
    from snn_lats.engine.recipe import RecipeError

    with pytest.raises(RecipeError, match=message):
        TrainConfig(**kwargs).validate()
