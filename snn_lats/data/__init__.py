"""Data: the data sets read from their own files (nothing is ever downloaded), and resumable,
DDP-sharded, signal-safe loaders.

- :func:`build_datasets` (:mod:`.datasets`): the data set a configuration names: ImageNet-style
  folders (:mod:`.imagefolder`), MNIST and Fashion-MNIST (:mod:`.idx`), CIFAR (:mod:`.cifar`),
  event-camera recordings as frames (:mod:`.events`), and the built-in offline digits;
- :func:`build_loaders`, :func:`set_epoch` (:mod:`.loaders`): loaders whose order and augmentation
  a resumed run repeats exactly;
- :mod:`.seeding`: every seed of a run, in one place;
- :mod:`.catalog`: the data sets' names, importable without torch.
"""

from typing import TYPE_CHECKING

from snn_lats import _lazy

# The exports, imported from their submodule on first use (snn_lats._lazy says why).
if TYPE_CHECKING:
    from snn_lats.data.catalog import AUTO_AUGMENT, BAD_IMAGE_POLICIES, DATASETS, EVENT_DATASETS, SPLIT_BY, EventFormat
    from snn_lats.data.cifar import CIFAR_FILES, CIFAR10Binary, CIFAR100Binary
    from snn_lats.data.datasets import (
        DEFAULT_IMAGE_SIZE,
        DigitsDataset,
        balanced_subset,
        build_datasets,
        digits_val_mask,
        validation_images,
    )
    from snn_lats.data.errors import DataError
    from snn_lats.data.events import EventFrames
    from snn_lats.data.idx import FASHION_MNIST_SYSTEM_PATH, MNIST_FILES, FashionMNISTFiles, MNISTFiles, read_idx
    from snn_lats.data.imagefolder import (
        IMAGE_EXTENSIONS,
        IMAGENET_MEAN,
        IMAGENET_STD,
        ImageFolderDataset,
        check_image_folder,
        scan_image_folder,
        train_transform,
        val_transform,
    )
    from snn_lats.data.loaders import (
        Batch,
        Loader,
        SeededSamples,
        ShardSampler,
        batch_mixing,
        build_loaders,
        collate,
        set_epoch,
    )

__all__, __getattr__, __dir__ = _lazy.attach(__name__)
