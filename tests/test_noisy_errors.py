"""Bad input to the noisy copies: one line naming what was expected."""
from __future__ import annotations

import numpy as np
import pytest

from advsal_bench.detectors.noisy import noisy_copies


def test_unpaired_images_are_rejected_with_both_shapes():
    x = np.zeros((4, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match=r"^x_adv: expected one adversarial image per clean image, shape "
                                         r"\(4, 28, 28, 1\), got \(3, 28, 28, 1\)$"):
        noisy_copies(x, x[:3])


def test_an_unknown_kind_lists_the_valid_ones():
    x = np.zeros((2, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match=r"^noise: expected one of auto, gaussian, flip, got 'salt'$"):
        noisy_copies(x, x, kind="salt")
