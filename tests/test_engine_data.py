"""Data sets and loaders: ImageFolder checks and transforms, the digits set, sharded loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from snn_lats.engine.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataError,
    DigitsDataset,
    build_datasets,
    build_loaders,
    collate,
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
