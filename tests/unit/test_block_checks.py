"""What a worker caches for a block is checked first: one finite row of features (and logits) per sample."""

import numpy as np
import pytest

from gpu_daemon.worker import check_block


def test_finite_rows_pass_with_or_without_logits():
    feats = np.ones((4, 3), np.float32)
    check_block("m", "r", 0, 4, feats, None)
    check_block("m", "r", 0, 4, feats, np.zeros((4, 10), np.float32))


@pytest.mark.parametrize("what", ["features", "logits"])
def test_a_non_finite_value_fails_the_block_naming_the_sample(what):
    feats, logits = np.ones((5, 3), np.float32), np.ones((5, 2), np.float32)
    (feats if what == "features" else logits)[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"non-finite %s for 1 of the 5 samples of block 7 of reader r "
                                         r"\(first: sample 3" % what):
        check_block("m", "r", 7, 5, feats, logits)


def test_infinite_logits_fail_too():
    logits = np.zeros((2, 2), np.float32)
    logits[0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite logits"):
        check_block("m", "r", 0, 2, np.zeros((2, 2), np.float32), logits)


def test_a_row_count_other_than_the_blocks_fails():
    with pytest.raises(ValueError, match=r"features of shape \(3, 4\) for block 0 of reader r, which has 4 samples"):
        check_block("m", "r", 0, 4, np.zeros((3, 4), np.float32), None)
