"""Dataset loaders: good input loads, every kind of bad input fails naming file and problem."""
import gzip
import pickle

import numpy as np
import pytest

from ibdiv.data import datasets, shapes


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.fixture
def good_arrays():
    rng = np.random.default_rng(0)
    return {"images": rng.integers(0, 256, (20, 8, 8)).astype(np.uint8), "labels": np.arange(20) % 4}


def test_npz_loads_and_scales_to_unit_range(tmp_path, good_arrays):
    d = datasets.load_npz_dataset(_write_npz(tmp_path / "ok.npz", **good_arrays))
    assert d.images.dtype == np.float32 and d.images.max() <= 1.0 and d.images.max() > 0.5
    assert d.n_classes == 4 and list(d.labels[:4]) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda a: a.pop("labels"), "missing array 'labels'"),
        (lambda a: a.update(images=a["images"][:, :, :4]), "must be square"),
        (lambda a: a.update(images=a["images"].reshape(20, 64)), "shape (n, H, W)"),
        (lambda a: a.update(images=np.full((20, 8, 8), "x")), "must be numeric"),
        (lambda a: a.update(images=np.where(np.eye(8, dtype=bool), np.nan, 0.5)[None].repeat(20, 0)), "NaN"),
        (lambda a: a.update(labels=a["labels"][:-1]), "19 labels do not match 20 images"),
        (lambda a: a.update(labels=np.zeros(20, dtype=int)), "only one class"),
        (lambda a: a.update(labels=np.linspace(0, 1, 20)), "integer array"),
        (lambda a: a.update(images=a["images"].astype(float) * 10), "pixel values"),
    ],
)
def test_bad_npz_names_file_and_problem(tmp_path, good_arrays, mutate, problem):
    mutate(good_arrays)
    path = _write_npz(tmp_path / "bad.npz", **good_arrays)
    with pytest.raises(datasets.DatasetError) as err:
        datasets.load_npz_dataset(path)
    assert str(path) in str(err.value) and problem in str(err.value)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(datasets.DatasetError, match="nope.npz: file not found"):
        datasets.load_npz_dataset(tmp_path / "nope.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(datasets.DatasetError, match="corrupt.npz: not a readable .npz"):
        datasets.load_npz_dataset(corrupt)


def test_image_folder_loads_classes_from_subfolders(tmp_path):
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.full((12, 12), 40 * i, dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    d = datasets.load_image_folder(tmp_path, 8)
    assert d.images.shape == (6, 8, 8) and d.class_names == ["cat", "dog"]
    assert list(d.labels) == [0, 0, 0, 1, 1, 1]


def test_image_folder_unreadable_image_named(tmp_path):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / name / "0.png")
    (tmp_path / "b" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(datasets.DatasetError, match=r"broken.png: unreadable image"):
        datasets.load_image_folder(tmp_path, 8)


def test_image_folder_with_one_class_fails(tmp_path):
    from PIL import Image

    (tmp_path / "only").mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "only" / "0.png")
    with pytest.raises(datasets.DatasetError, match="only one class"):
        datasets.load_image_folder(tmp_path, 8)


def test_checksum_mismatch_names_file(tmp_path):
    f = tmp_path / "blob.gz"
    f.write_bytes(b"abc")
    with pytest.raises(datasets.DatasetError, match=r"blob.gz: SHA-256 mismatch"):
        datasets._check_sha256(f, "0" * 64)


def test_restricted_unpickler_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    f = tmp_path / "evil.gz"
    with gzip.open(f, "wb") as g:
        pickle.dump(Evil(), g)
    with pytest.raises(datasets.DatasetError, match="builtins.print is not allowed"):
        datasets._restricted_unpickle(f)
    ok = tmp_path / "ok.gz"
    with gzip.open(ok, "wb") as g:
        pickle.dump(np.arange(5), g)
    assert list(datasets._restricted_unpickle(ok)) == [0, 1, 2, 3, 4]


def test_animals_loads_pinned_package_data():
    d = datasets.load_animals()
    assert d.images.shape == (10000, 28, 28) and d.n_classes == 10
    assert np.bincount(d.labels).tolist() == [1000] * 10
    assert datasets.resize(d.images[:5], 16).shape == (5, 16, 16)


def test_digits_loads():
    d = datasets.load_digits()
    assert d.images.shape == (1797, 8, 8) and d.images.max() == 1.0


def test_stratified_split_takes_fraction_from_every_class():
    labels = np.repeat(np.arange(5), [10, 20, 30, 40, 50])
    held = datasets.stratified_split(labels, 0.2, seed=1)
    assert [held[labels == c].sum() for c in range(5)] == [2, 4, 6, 8, 10]
    assert (held == datasets.stratified_split(labels, 0.2, seed=1)).all()


def test_prepared_roundtrip_keeps_split_and_layouts(tmp_path):
    images, labels, layouts = shapes.generate(64, 16, seed=3)
    held = datasets.stratified_split(labels, 0.25, seed=0)
    datasets.save_prepared(tmp_path / "p.npz", datasets.Dataset(images, labels, list(shapes.CLASS_NAMES), layouts), held)
    train = datasets.load_prepared(tmp_path / "p.npz", "train")
    assert len(train.labels) == (~held).sum() and (train.layouts == layouts[~held]).all()
    assert np.abs(train.images - images[~held]).max() <= 0.5 / 255 + 1e-6


def test_shapes_path_and_execution_are_separate_stages():
    rng = np.random.default_rng(0)
    classes, layouts = np.zeros(200, int), np.zeros(200, int)
    noisy = shapes.render(classes, layouts, 16, rng)
    assert noisy.std(0).mean() > 0.01  # execution noise varies renders of one layout
    tmpl = shapes.templates(16)
    assert tmpl.shape == (8, shapes.N_LAYOUTS, 16, 16)
    # Different layouts of one class differ in where and how much ink (the path matters).
    signatures = {(*np.round(np.argwhere(t > 0.5).mean(0), 1), int((t > 0.5).sum())) for t in tmpl[0]}
    assert len(signatures) == shapes.N_LAYOUTS
    # Noisy renders are nearest to their own layout's template.
    dist = ((noisy[:, None] - tmpl[0][None]) ** 2).sum((2, 3))
    assert (dist.argmin(1) == 0).mean() > 0.7


def test_shapes_generate_is_balanced_and_deterministic():
    a = shapes.generate(160, 16, seed=5)
    b = shapes.generate(160, 16, seed=5)
    assert all((x == y).all() for x, y in zip(a, b))
    assert np.bincount(a[1]).tolist() == [20] * 8
