"""ImageDataModule: the base every dataset shares.

Datasets hand out uint8 images [3, R_max, R_max] at the final resolution. Everything per batch
happens on the device after transfer, not per image in Python: conversion to [-1, 1] floats,
downsampling to the current stage's resolution, the PGGAN real-image fade and random flips.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from ganlab.data.labels import LabelInfo, LabelledDataset, check_label_mode, collate, describe
from ganlab.data.labels import label_info as make_label_info
from ganlab.data.transforms import (  # noqa: F401 - re-exported: ganlab.data.base's batch transforms
    collate_images,
    fade_reals,
    random_hflip,
    resize,
    to_float,
    to_uint8,
)
from ganlab.lightning_api import resume_starts_new_epoch
from ganlab.logs import get_logger
from ganlab.training.resume import gather_per_rank
from ganlab.utils import ConfigError, check_int, check_positive, check_resolution

log = get_logger(__name__)

DOWNSAMPLE_MODES = ("area", "nearest", "bilinear")
# Seed of the permutation `data.max_images` takes its subset from: a constant, so the subset is
# the same on every machine, run and training seed, and smaller subsets lie inside larger ones.
MAX_IMAGES_SEED = 0


def fixed_subset(dataset: Dataset, max_images: int | None) -> Dataset:
    """The first `max_images` items of a fixed permutation of `dataset` (seed MAX_IMAGES_SEED);
    the dataset itself when None. Raises ConfigError if the dataset is smaller."""
    if max_images is None:
        return dataset
    total = len(dataset)
    if max_images > total:
        raise ConfigError(
            f"data.max_images={max_images} is larger than the training split ({total} images): "
            f"set data.max_images to at most {total}, or null to train on all of them"
        )
    order = torch.randperm(total, generator=torch.Generator().manual_seed(MAX_IMAGES_SEED))
    return Subset(dataset, order[:max_images].tolist())


# ----------------------------------------------------------------------------- datasets, samplers
class ArrayImageDataset(Dataset):
    """uint8 images [N, 3, R, R] held in a numpy array (in memory or memory-mapped).

    `__getitems__` reads a whole batch with one fancy-index (sorted, so a memory map reads
    forward), which is what makes the cached path fast.
    """

    def __init__(self, array: np.ndarray) -> None:
        if array.ndim != 4 or array.shape[1] != 3 or array.dtype != np.uint8:
            raise ValueError(f"expected uint8 [N, 3, R, R], got {array.dtype} {array.shape}")
        self.array = array

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return torch.from_numpy(np.array(self.array[index]))

    def __getitems__(self, indices: Sequence[int]) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.array[np.sort(np.asarray(indices))]))


class ResizableBatchSampler(Sampler[list[int]]):
    """Shuffled batches whose size may change between batches (per-stage batch sizes).

    Each pass is a new seeded permutation (seed + pass number), sharded over ranks. The size is
    read at each batch, so `batch_size` set from the main process applies after the batches the
    loader's workers have already prefetched.

    For exact resume the sampler knows where training is, not just what it handed out: the loader
    and Lightning fetch batches ahead, so `consumed()` (called once per trained batch, in order)
    moves the position past the oldest batch handed out. `state_dict` holds that position (pass,
    images into its order), the sizes of the batches already handed out beyond it (drawn at the
    batch size of their time) and whether the pass had ended; `load_state_dict` makes the next
    `__iter__` hand out exactly what the interrupted iterator would have.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        self.num_items, self.batch_size, self.seed, self.shuffle = (
            num_items,
            batch_size,
            seed,
            shuffle,
        )
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.passes = 0  # passes started: the next __iter__ starts pass `passes`
        self.position = (0, 0)  # (pass, images into its order) after the last trained batch
        self._ahead: deque[int] = deque()  # sizes of batches handed out, not yet trained on
        self._ended = False  # the current pass handed out its last batch
        self._resume: dict[str, Any] | None = None

    def _order(self, pass_index: int) -> Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + pass_index)
            order = torch.randperm(self.num_items, generator=generator)
        else:
            order = torch.arange(self.num_items)
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        resume, self._resume = self._resume or {}, None
        pass_index = resume.get("pass", self.passes)
        start = resume.get("offset", 0)
        self.passes = pass_index + 1
        self.position, self._ahead, self._ended = (pass_index, start), deque(), False
        return self._batches(pass_index, start, resume.get("ahead", []), resume.get("ended", False))

    def _batches(
        self, pass_index: int, start: int, replay: list[int], ended: bool
    ) -> Iterator[list[int]]:
        order = self._order(pass_index)
        for size in replay:  # handed out before the checkpoint, at the batch size of then
            yield self._hand_out(order, start, size)
            start += size
        while not ended and start < len(order):
            batch = order[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                break
            yield self._hand_out(order, start, len(batch))
            start += len(batch)
        self._ended = True

    def _hand_out(self, order: Tensor, start: int, size: int) -> list[int]:
        self._ahead.append(size)
        return order[start : start + size].tolist()

    def consumed(self) -> None:
        """One batch (the oldest handed out) was trained on."""
        if not self._ahead:
            return
        pass_index, offset = self.position
        self.position = (pass_index, offset + self._ahead.popleft())

    def state_dict(self, new_epoch: bool = False) -> dict[str, Any]:
        """Where to continue; `new_epoch`: the resumed run begins a new epoch (a new pass)."""
        pass_index, offset = self.position
        if new_epoch:
            return {"pass": pass_index + 1, "offset": 0, "ahead": [], "ended": False,
                    "world_size": self.world_size}
        return {"pass": pass_index, "offset": offset, "ahead": list(self._ahead),
                "ended": self._ended, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state` at the next __iter__ (another world size: at the same image
        count of the same pass, not exact)."""
        state = dict(state)
        if state.get("world_size", self.world_size) != self.world_size:
            offset = state["offset"] * state["world_size"] // self.world_size
            state = {"pass": state["pass"], "offset": offset}
        self._resume = state

    def __len__(self) -> int:
        per_rank = len(range(self.rank, self.num_items, self.world_size))
        full, rest = divmod(per_rank, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1


# ----------------------------------------------------------------------------- the base datamodule
class ImageDataModule(pl.LightningDataModule):
    """Base datamodule. Subclasses implement `build_split(split)` -> Dataset of uint8 [3, R, R].

    Args:
        resolution: final (largest) resolution R, a power of two in [4, 1024].
        batch_size: images per batch per device; `set_batch_size` changes it between stages.
        num_workers: loader worker processes (0 = load in the main process).
        hflip: random horizontal flips of the reals (on the device, per batch).
        downsample: filter from R to a lower stage resolution: area | nearest | bilinear.
        eval_batch_size: batch size of the validation loader.
        seed: seed of the shuffling order.
        max_images: train on this many images of the training split (None: all), the same
            fixed random subset everywhere (`fixed_subset`); validation is untouched.
        labels: none | class | attributes (ganlab.data.labels): with labels, items are
            (image, label [K]) and batches (images, labels [B, K]); the dataset says which it
            has (`supported_labels`) and implements `label_names` and `split_labels`.
    """

    dataset_name = "images"
    supported_labels: tuple[str, ...] = ()  # data.labels modes this dataset has, besides none

    def __init__(
        self,
        resolution: int = 64,
        batch_size: int = 64,
        num_workers: int = 0,
        hflip: bool = False,
        downsample: str = "area",
        eval_batch_size: int = 256,
        pin_memory: bool = True,
        seed: int = 0,
        max_images: int | None = None,
        labels: str = "none",
    ) -> None:
        super().__init__()
        check_resolution(resolution, 4, 1024, "data.resolution")
        check_label_mode(labels, self.supported_labels, self.dataset_name)
        self.labels = labels
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size!r} must be a positive integer")
        check_positive(eval_batch_size, "data.eval_batch_size")
        check_int(num_workers, "data.num_workers", 0)
        if max_images is not None and (
            isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1
        ):
            raise ConfigError(
                f"data.max_images={max_images!r} must be a positive number of training images "
                "(e.g. data.max_images=1000) or null for all"
            )
        self.max_images = max_images
        if downsample not in DOWNSAMPLE_MODES:
            raise ConfigError(f"data.downsample={downsample!r}: choose one of {DOWNSAMPLE_MODES}")
        self.max_resolution = self.resolution = resolution
        self.fade_alpha = 1.0
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.hflip, self.downsample = num_workers, hflip, downsample
        self.pin_memory, self.seed = pin_memory, seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.train_sampler: ResizableBatchSampler | None = None
        self._sampler_state: dict[str, Any] | None = None  # from a checkpoint, for the sampler

    def build_split(self, split: str) -> Dataset:
        """Dataset of uint8 [3, R, R] images for split 'train' or 'val'."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = fixed_subset(self.labelled_split("train"), self.max_images)
            if self.labels != "none":  # the class counts, at start
                table = self.train_set.dataset.labels[self.train_set.indices] if isinstance(
                    self.train_set, Subset) else self.train_set.labels
                log.info(describe(self.label_info(), table, "train"))
        if self.val_set is None and stage in (None, "fit", "validate"):
            self.val_set = self.labelled_split("val")

    # ------------------------------------------------------------------ labels
    def label_names(self) -> list[str]:
        """The K class or attribute names (with data.labels set)."""
        raise NotImplementedError

    def split_labels(self, split: str, images: Dataset) -> Tensor:
        """Label table float32 [len(images), K] of `images` = build_split(split), row i the label
        of item i (one-hot or multi-hot)."""
        raise NotImplementedError

    def train_label_table(self) -> Tensor:
        """The training split's labels [N, K] without decoding images (datasets read from
        files override it with their source's labels)."""
        return self.split_labels("train", self.build_split("train"))

    def label_info(self) -> LabelInfo | None:
        """Kind, names and training frequencies of the labels (None without labels); reads the
        label source, so a bad one is a ConfigError here, before training."""
        if self.labels == "none":
            return None
        if getattr(self, "_label_info", None) is None:
            self._label_info = make_label_info(self.labels, self.label_names(),
                                               self.train_label_table())
        return self._label_info

    def labelled_split(self, split: str) -> Dataset:
        """build_split(split), with its labels when data.labels is set (LabelledDataset)."""
        images = self.build_split(split)
        if self.labels == "none":
            return images
        self.label_info()
        return LabelledDataset(images, self.split_labels(split, images))

    # ------------------------------------------------------------------ loaders
    def _loader(self, dataset: Dataset, sampler: Sampler) -> DataLoader:
        # its own generator: making an iterator (each epoch, and on resume) draws the workers'
        # base seed from it, not from the global RNG that z, flips and penalties draw from
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
        )

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_and_world()
        self.train_sampler = ResizableBatchSampler(
            len(self.train_set), self.batch_size, seed=self.seed, rank=rank, world_size=world
        )
        if self._sampler_state is not None:
            self.train_sampler.load_state_dict(self._sampler_state)
            self._sampler_state = None
        return self._loader(self.train_set, self.train_sampler)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_and_world()
        sampler = ResizableBatchSampler(
            len(self.val_set),
            self.eval_batch_size,
            shuffle=False,
            rank=rank,
            world_size=world,
            drop_last=False,
        )
        return self._loader(self.val_set, sampler)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The training data position, one entry per rank (see ResizableBatchSampler)."""
        if self.train_sampler is not None:
            new_epoch = self.trainer is not None and resume_starts_new_epoch(self.trainer)
            state = self.train_sampler.state_dict(new_epoch)
        elif self._sampler_state is not None:  # resumed, no loader made yet: still that position
            state = self._sampler_state
        else:
            return {}
        return {"samplers": gather_per_rank(state)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue at the saved position when the training loader is made (another world
        size: rank 0's position, at the same image count)."""
        samplers = state_dict.get("samplers")
        if samplers:
            rank, world = self._rank_and_world()
            self._sampler_state = samplers[rank] if len(samplers) == world else samplers[0]

    # ------------------------------------------------------------------ stage control
    def set_resolution(self, resolution: int, alpha: float = 1.0) -> None:
        """Serve reals at `resolution` (<= final), faded with `alpha` in [0, 1] (1 = no fade)."""
        check_resolution(resolution, 4, self.max_resolution, "stage resolution")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha} must be in [0, 1]")
        self.resolution, self.fade_alpha = resolution, float(alpha)

    def set_batch_size(self, batch_size: int) -> None:
        """Change the training batch size from the next batch the sampler draws."""
        self.batch_size = batch_size
        if self.train_sampler is not None:
            self.train_sampler.batch_size = batch_size

    def prepare_reals(self, images: Tensor) -> Tensor:
        """uint8 [N, 3, R_max, R_max] -> float [N, 3, r, r] in [-1, 1] at the current stage."""
        x = resize(to_float(images), self.resolution, self.downsample)
        x = fade_reals(x, self.fade_alpha)
        return random_hflip(x) if self.hflip else x

    def prepare_eval(self, images: Tensor) -> Tensor:
        """uint8 [N, 3, R_max, R_max] -> uint8 [N, 3, r, r] at the current stage (for metrics)."""
        if images.shape[-1] == self.resolution:
            return images
        return to_uint8(resize(to_float(images), self.resolution, self.downsample))

    def on_after_batch_transfer(
        self, batch: Tensor | tuple[Tensor, Tensor], dataloader_idx: int
    ) -> Tensor | tuple[Tensor, Tensor]:
        """images -> prepared images; (images, labels) -> (prepared images, labels): labels pass
        unchanged (never flipped or augmented), trimmed with their images."""
        labels = None
        if not isinstance(batch, Tensor):
            batch, labels = batch
        training = self.trainer is None or self.trainer.training
        if not training:
            images = self.prepare_eval(batch)
            return images if labels is None else (images, labels)
        if self.trainer is not None and self.train_sampler is not None:
            self.train_sampler.consumed()  # this batch is trained on: the data position moves
        # A batch prefetched before a per-stage batch-size cut (set_batch_size) is trimmed.
        images = self.prepare_reals(batch[: self.batch_size])
        return images if labels is None else (images, labels[: self.batch_size])
