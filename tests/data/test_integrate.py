"""simulate_noisy: the reference's draw order, block independence, clean observations at 0."""

import numpy as np

from pl_pac_trs.data.integrate import BLOCK_SIZE, simulate_noisy


def _rotation(t, x):
    return np.stack([x[:, 1], -x[:, 0]], axis=1)


def _start(rng):
    return rng.uniform(-1.0, 1.0, size=2)


def test_draw_order_noise_and_exact_start():
    t, clean, observed = simulate_noisy(_rotation, _start, 2, 3, 20, 2.0, 0.1, seed=5)
    assert t.tolist() == np.linspace(0.0, 2.0, 21).tolist()
    rng = np.random.RandomState(7)  # trajectory 2 of seed 5
    start = rng.uniform(-1.0, 1.0, size=2)
    noise = np.stack([rng.randn(21), rng.randn(21)], axis=-1)  # first coordinate, then second
    assert np.array_equal(clean[2, 0], start)
    np.testing.assert_allclose(observed[2] - clean[2], 0.1 * noise, rtol=0, atol=1e-15)
    exact = np.stack([np.cos(t), -np.sin(t)], axis=1) * start[0]
    exact += np.stack([np.sin(t), np.cos(t)], axis=1) * start[1]
    np.testing.assert_allclose(clean[2], exact, rtol=0, atol=1e-9)


def test_trajectory_independent_of_count_and_clean_without_noise():
    _, few, _ = simulate_noisy(_rotation, _start, 2, 2, 10, 1.0, 0.0, seed=0)
    _, many, observed = simulate_noisy(_rotation, _start, 2, BLOCK_SIZE + 2, 10, 1.0, 0.0, 0)
    assert np.array_equal(few, many[:2]) and np.array_equal(observed, many)
    _, none, _ = simulate_noisy(_rotation, _start, 2, 0, 10, 1.0, 0.1, seed=0)
    assert none.shape == (0, 11, 2)
