"""Small synthetic datasets generated with numpy (no downloads)."""

from __future__ import annotations

import numpy as np


def make_moons(
    n_samples: int = 100, noise: float = 0.1, seed: int | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles, like scikit-learn's ``make_moons``.

    Returns ``X`` of shape ``(n_samples, 2)`` and labels ``y`` in ``{-1, 1}`` (micrograd's
    demo convention for its max-margin loss).
    """
    if n_samples < 2:
        raise ValueError(f"make_moons needs n_samples >= 2, got {n_samples}")
    if noise < 0:
        raise ValueError(f"make_moons needs noise >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    angle_out = np.linspace(0, np.pi, n_out)
    angle_in = np.linspace(0, np.pi, n_in)
    outer = np.stack([np.cos(angle_out), np.sin(angle_out)], axis=1)
    inner = np.stack([1 - np.cos(angle_in), 1 - np.sin(angle_in) - 0.5], axis=1)
    X = np.concatenate([outer, inner]) + rng.normal(scale=noise, size=(n_samples, 2))
    y = np.concatenate([-np.ones(n_out), np.ones(n_in)])
    order = rng.permutation(n_samples)
    return X[order], y[order]
