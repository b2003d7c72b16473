"""Model files: safe, versioned, and clear errors for anything else."""

import json
import zipfile

import numpy as np
import pytest

import margflow as mf
from margflow.io import FORMAT_VERSION, ModelFileError, read_metadata


@pytest.fixture(scope="module")
def saved(tmp_path_factory, box_data):
    x, bounds = box_data
    flow = mf.MAF(x, params=["a", "b"], bounds=bounds, n_layers=2, hidden=(8, 8), transform="logit")
    flow.fit(epochs=3, progress=False)
    path = tmp_path_factory.mktemp("io") / "model.mflow"
    flow.save(path)
    return flow, path


def test_file_holds_everything_without_pickle(saved):
    flow, path = saved
    with np.load(path, allow_pickle=False) as npz:  # loading never unpickles
        names = set(npz.files)
    assert {"__meta__", "pre.bounds", "pre.blend", "pre.mean", "pre.chol", "data.theta", "data.weights"} <= names
    meta = read_metadata(path)
    assert meta["format"] == "margflow" and meta["format_version"] == FORMAT_VERSION
    assert meta["margflow_version"] == mf.__version__ and meta["class"] == "MAF"
    assert meta["params"] == ["a", "b"] and meta["preprocessing"] == {"kind": "logit", "auto_blend": True}
    assert meta["config"]["n_layers"] == 2 and meta["config"]["hidden"] == [8, 8]
    assert meta["config"]["fit"]["epochs"] == 3 and len(meta["config"]["history"]["loss"]) == 3


def test_reload_reproduces_log_prob(saved):
    flow, path = saved
    other = mf.load(path)
    x = flow.sample(500, seed=0)
    np.testing.assert_array_equal(other.log_prob(x), flow.log_prob(x))
    assert other._pre.box.kind == "logit"


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        mf.load(tmp_path / "nope.mflow")


def test_truncated_file(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.mflow"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            mf.load(bad)


def test_corrupted_file(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("model.var000.npy")
    # flip bytes inside the stored weights: the archive's CRC check catches it
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[start : start + 8] = bytes(255 - b for b in data[start : start + 8])
    bad = tmp_path / "flipped.mflow"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupted"):
        mf.load(bad)


def test_foreign_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a margflow model file"):
        mf.load(text)
    npz = tmp_path / "other.npz"
    np.savez(npz, a=np.arange(3))
    with pytest.raises(ModelFileError, match="no margflow metadata"):
        mf.load(npz)
    npy = tmp_path / "array.npy"
    np.save(npy, np.arange(3))
    with pytest.raises(ModelFileError, match="bare numpy array"):
        mf.load(npy)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __meta__=np.array([{"format": "margflow"}], dtype=object))
    with pytest.raises(ModelFileError):
        mf.load(pickled)


def _rewrite_meta(path, out, change, drop=()):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k not in drop}
    meta = json.loads(bytes(arrays["__meta__"]).decode())
    change(meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(out, "wb") as f:
        np.savez(f, **arrays)


def test_newer_format_asks_for_an_upgrade(saved, tmp_path):
    _, path = saved
    newer = tmp_path / "newer.mflow"
    _rewrite_meta(path, newer, lambda m: m.update(format_version=FORMAT_VERSION + 1, margflow_version="9.0"))
    with pytest.raises(ModelFileError, match="upgrade margflow"):
        mf.load(newer)


def test_format_1_files_load_as_the_plain_probit(box_data, tmp_path):
    """Format 1 had no blended box map: such a file is read as the plain probit it was written with."""
    x, bounds = box_data
    flow = mf.MAF(x, bounds=bounds, n_layers=2, hidden=(8, 8), blend=0.0)
    flow.fit(epochs=2, progress=False)
    flow.save(tmp_path / "new.mflow")
    old = tmp_path / "old.mflow"
    _rewrite_meta(
        tmp_path / "new.mflow",
        old,
        lambda m: (m.update(format_version=1), m["preprocessing"].pop("auto_blend")),
        drop=("pre.blend",),
    )
    back = mf.load(old)
    assert not back._pre.box.blend.any() and not back._pre.auto_blend
    np.testing.assert_array_equal(back.log_prob(x[:50]), flow.log_prob(x[:50]))


def test_unknown_class_and_inconsistent_weights(saved, tmp_path):
    _, path = saved
    odd = tmp_path / "odd.mflow"
    _rewrite_meta(path, odd, lambda m: m.update({"class": "Mystery"}))
    with pytest.raises(ModelFileError, match="Mystery"):
        mf.load(odd)
    wrong = tmp_path / "wrong.mflow"
    _rewrite_meta(path, wrong, lambda m: m["config"].update(hidden=[9, 9]))
    with pytest.raises(ModelFileError, match="shape"):
        mf.load(wrong)


def test_pickle_roundtrip_every_estimator(estimator):
    """Estimators pickle (through the model file), so they go to process pools; the copy gives the
    same numbers."""
    import pickle

    x = estimator.sample(50, seed=2)
    back = pickle.loads(pickle.dumps(estimator))
    assert type(back) is type(estimator) and back.params == estimator.params
    np.testing.assert_array_equal(back.log_prob(x), estimator.log_prob(x))
    np.testing.assert_array_equal(back.sample(20, seed=3), estimator.sample(20, seed=3))
    np.testing.assert_array_equal(back.bounds, estimator.bounds)


def test_notes_round_trip(tmp_path):
    """An estimator's notes (JSON values) are written with it and read back; other values are refused."""
    est = mf.KDE(np.random.default_rng(0).normal(size=(200, 2)), bounds=[[-6, 6], [-6, 6]])
    assert est.notes == {}
    est.notes["dataset"] = {"name": "run A", "box": [[-6.0, 6.0], [-6.0, 6.0]]}
    est.save(tmp_path / "k.mflow")
    assert mf.load(tmp_path / "k.mflow").notes == est.notes
    assert mf.read_metadata(tmp_path / "k.mflow")["notes"] == est.notes
    est.notes["bad"] = np.zeros(2)
    with pytest.raises(TypeError, match="JSON"):
        est.save(tmp_path / "bad.mflow")
    assert not (tmp_path / "bad.mflow").exists()
