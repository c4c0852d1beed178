import numpy as np
import pytest

from labelaudit.data.noise import CIFAR10_PAIRS, inject_noise


def test_symmetric_flips_exact_fraction_to_other_classes_and_is_seeded():
    labels = np.repeat(np.arange(5), 100)
    noisy = inject_noise(labels, kind="symmetric", rate=0.2, n_classes=5, seed=3)
    assert (noisy != labels).sum() == 100
    assert set(np.unique(noisy)) <= set(range(5))
    np.testing.assert_array_equal(noisy, inject_noise(labels, kind="symmetric", rate=0.2, n_classes=5, seed=3))
    assert not np.array_equal(noisy, inject_noise(labels, kind="symmetric", rate=0.2, n_classes=5, seed=4))


def test_asymmetric_only_moves_pairs():
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    labels = np.repeat(np.arange(10), 50)
    noisy = inject_noise(labels, kind="asymmetric", rate=0.4, n_classes=10, class_names=names)
    for i in np.flatnonzero(noisy != labels):
        assert CIFAR10_PAIRS[names[labels[i]]] == names[noisy[i]]
    assert (noisy != labels).sum() == 5 * 20


def test_instance_noise_moves_to_plausible_classes():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    images = (rng.uniform(0, 60, (120, 8, 8, 3)) + labels[:, None, None, None] * 80).astype(np.uint8)
    noisy = inject_noise(labels, kind="instance", rate=0.1, n_classes=3, images=images, seed=0)
    flipped = np.flatnonzero(noisy != labels)
    assert len(flipped) == 12
    # classes are ordered by brightness: the most plausible wrong class is a neighbour
    assert (np.abs(noisy[flipped] - labels[flipped]) == 1).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        inject_noise(np.zeros(3, int), kind="nope", rate=0.1, n_classes=2)
    with pytest.raises(ValueError):
        inject_noise(np.zeros(3, int), kind="symmetric", rate=1.5, n_classes=2)
    with pytest.raises(ValueError, match="images"):
        inject_noise(np.zeros(3, int), kind="instance", rate=0.1, n_classes=2)
