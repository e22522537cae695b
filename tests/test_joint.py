"""The joint path / execution split (ibdiv.measure.joint) on constructed likelihoods with known
joint information."""
import math

import numpy as np
import pytest

from ibdiv.measure import joint

LOG_HALF = math.log(0.5)


def two_paths(n_per_path: int = 6, R: int = 4, overlap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One class, two paths (keys 0, 1, each half of the P paths); each continuation has probability
    1/2 under its own path and (overlap) 1/2 or (disjoint supports) 0 under the other."""
    P = 2 * n_per_path
    keys = np.repeat([0, 1], n_per_path)[None]
    log_q = np.full((1, P, R, 2), -np.inf)
    log_q[0, np.arange(P), :, keys[0]] = LOG_HALF
    if overlap:
        log_q[:] = LOG_HALF
    return log_q, keys


def test_disjoint_supports_carry_the_whole_path():
    h_tot, h_exec, info = joint.joint_split(*two_paths())
    assert info == pytest.approx(1.0)  # H(path) of two equiprobable paths
    assert h_exec == pytest.approx(1.0) and h_tot == pytest.approx(2.0)  # -log2(1/2); H(X|c) = I + H(X|path)


def test_identical_conditionals_carry_no_path():
    h_tot, h_exec, info = joint.joint_split(*two_paths(overlap=True))
    assert info == pytest.approx(0.0) and h_tot == pytest.approx(h_exec)


def test_a_misread_mixture_keeps_one_minus_the_binary_entropy():
    """Two equiprobable paths on disjoint supports whose continuations land on the other path's support
    with probability e (a misread): I(X; path) = 1 - h(e) bits, read exactly when the continuations
    come in those proportions and the reader is the mixture q(x | u) = (1 - e) own + e other."""
    e, R, P = 0.25, 8, 4  # 2 of 8 continuations of each path misread
    keys = np.array([[0, 0, 1, 1]])
    landed = np.tile((np.arange(R) < 2).astype(int), (P, 1))  # 1: on the other path's support
    support = np.where(landed == 1, 1 - keys[0][:, None], keys[0][:, None])  # (P, R)
    log_q = np.empty((1, P, R, 2))
    for u in (0, 1):
        log_q[0, :, :, u] = np.where(support == u, math.log(1 - e), math.log(e))
    h = -(e * math.log2(e) + (1 - e) * math.log2(1 - e))
    assert joint.joint_split(log_q, keys)[2] == pytest.approx(1 - h)


def test_a_resample_reweights_the_mixture():
    log_q, keys = two_paths()
    only_first = np.zeros((1, keys.shape[1]), dtype=int)  # every slot drew path 0: one path, no information
    assert joint.joint_split(log_q, keys, only_first)[2] == pytest.approx(0.0)


def test_responses_are_paired_and_per_token():
    """Three identical cells: every response is exactly 0 with SE 0 (the same resampled paths in each
    cell); a cell whose paths overlap loses the whole bit, read per token (/ N)."""
    rng = np.random.default_rng(0)
    same = joint.joint_responses([two_paths()[0]] * 3, [two_paths()[1]] * 3, n_tokens=4, n_boot=20, rng=rng)
    assert same["r_i3_path"] == {"value": 0.0, "se": 0.0}
    assert same["unperturbed"]["d_path"]["value"] == pytest.approx(0.25)  # 1 bit / 4 tokens
    lost = joint.joint_responses([two_paths()[0], two_paths()[0], two_paths(overlap=True)[0]], [two_paths()[1]] * 3,
                                 n_tokens=4, n_boot=20, rng=rng)
    assert lost["r_i3_path"]["value"] == pytest.approx(-0.25) and lost["r_i3_tot"]["value"] == pytest.approx(-0.25)
    assert lost["r_i3_exec"]["value"] == pytest.approx(0.0)  # -log2 q(x | own) is 1 bit in both
    assert lost["decoupling_index"]["value"] == pytest.approx(0.0)  # the only response is off the diagonal
