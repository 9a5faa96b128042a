"""The data stage: load the suite's dataset and cut it into the sets the other stages consume."""
from __future__ import annotations

import numpy as np

from ..config import SuiteConfig
from ..data import Dataset, load_dataset
from .artifacts import Images, Pool, Splits


def load(cfg: SuiteConfig, dataset: Dataset | None = None) -> Dataset:
    return dataset if dataset is not None else load_dataset(cfg.dataset, seed=cfg.seed)


def splits(cfg: SuiteConfig, data: Dataset) -> Splits:
    """f's train and test sets, the attack pool (adversarial train subset then test subset) and clean
    validation images outside every adversarial subset (test images first, since they match test data)."""
    n_tr = min(cfg.adversarial.train_size or len(data.x_train), len(data.x_train))
    n_te = min(cfg.adversarial.test_size or len(data.x_test), len(data.x_test))
    size = cfg.adversarial.validation_size
    if len(data.x_test) > n_te:
        val_split, x_val, y_val = "test", data.x_test[n_te : n_te + size], data.y_test[n_te : n_te + size]
    else:
        val_split, x_val, y_val = "train", data.x_train[n_tr : n_tr + size], data.y_train[n_tr : n_tr + size]
    pool = Pool(np.concatenate([data.x_train[:n_tr], data.x_test[:n_te]]),
                np.concatenate([data.y_train[:n_tr], data.y_test[:n_te]]), n_train=n_tr)
    return Splits(train=Images(data.x_train, data.y_train), test=Images(data.x_test, data.y_test), pool=pool,
                  val=Images(x_val, y_val), val_split=val_split, num_classes=int(data.num_classes), source=data.source)
