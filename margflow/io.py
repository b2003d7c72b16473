"""Versioned, pickle-free save and load of estimators.

A model file is a zip archive of ``.npy`` arrays (numpy's ``.npz``) read back
with ``allow_pickle=False``, so loading never executes code. One array,
``__meta__``, holds UTF-8 JSON: the format name and version, the margflow
version, the estimator class, its configuration, training history, parameter
names, logZ and the estimator's ``notes``. The others hold network weights, the preprocessing
(bounds, mean, Cholesky factor) and the training samples with their weights.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["save", "load", "read_metadata", "ModelFileError", "FORMAT_VERSION"]

FORMAT_NAME = "margflow"
#: bump when a file written now could not be read by an older margflow
FORMAT_VERSION = 2


class ModelFileError(ValueError):
    """The file is not a margflow model file this version can read."""


def _pack(estimator):
    """Every array of a model file, the JSON metadata as ``__meta__`` bytes."""
    from margflow import __version__

    config, arrays = estimator._get_state()
    pre = estimator._pre.state()
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "margflow_version": __version__,
        "class": type(estimator).__name__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "params": estimator.params,
        "logZ": estimator.logZ,
        "seed": estimator.seed,
        "preprocessing": pre["config"],
        "config": config,
        "notes": _json_notes(estimator),
    }
    out = {"__meta__": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
    out.update({f"pre.{k}": np.asarray(v) for k, v in pre["arrays"].items()})
    out["data.theta"] = estimator.data.theta
    out["data.weights"] = estimator.data.weights
    out.update({f"model.{k}": np.asarray(v) for k, v in arrays.items()})
    return out


def _json_notes(estimator):
    notes = getattr(estimator, "notes", {})
    try:
        json.dumps(notes)
    except TypeError as err:
        raise TypeError(f"estimator.notes must hold JSON values only (str, numbers, lists, dicts): {err}") from None
    return notes


def save(estimator, path):
    """Write ``estimator`` to ``path`` (one file; written atomically).

    Parameters
    ----------
    estimator : margflow.estimator.DensityEstimator
    path : str or os.PathLike
    """
    out = _pack(estimator)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **out)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the user's usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def to_bytes(estimator):
    """The model file of ``estimator`` as bytes (what pickling an estimator stores)."""
    buf = io.BytesIO()
    np.savez(buf, **_pack(estimator))
    return buf.getvalue()


def from_bytes(blob):
    """The estimator of :func:`to_bytes`."""
    return _build(*_read(io.BytesIO(blob), "<bytes>"), "<bytes>")


def _open(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    return _read(path, path)


def _read(source, path):
    """``(meta, arrays)`` of a model file at ``source`` (a path or a binary file object) named ``path``."""
    try:
        npz = np.load(source, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise ModelFileError(f"{path!r} is not a margflow model file (not a readable archive: {err})") from None
    if not hasattr(npz, "files"):
        raise ModelFileError(f"{path!r} is not a margflow model file (a bare numpy array)")
    try:
        if "__meta__" not in npz.files:
            raise ModelFileError(f"{path!r} is not a margflow model file (no margflow metadata)")
        try:
            meta = json.loads(bytes(npz["__meta__"]).decode("utf-8"))
        except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError, EOFError) as err:
            raise ModelFileError(f"{path!r} has unreadable metadata (corrupted or truncated?): {err}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise ModelFileError(f"{path!r} is not a margflow model file (format {meta.get('format')!r})")
        version = meta.get("format_version")
        if not isinstance(version, int):
            raise ModelFileError(f"{path!r} has no valid format version")
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"{path!r} uses model-file format {version}, written by margflow "
                f"{meta.get('margflow_version')}; this margflow reads format {FORMAT_VERSION} and older: "
                "upgrade margflow to load it"
            )
        try:
            arrays = {k: npz[k] for k in npz.files if k != "__meta__"}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
            raise ModelFileError(f"{path!r} is corrupted or truncated: {err}") from None
    finally:
        npz.close()
    return meta, arrays


def read_metadata(path):
    """The JSON metadata of a model file, without building the estimator."""
    return _open(path)[0]


def load(path):
    """Load an estimator written by :meth:`DensityEstimator.save`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    DensityEstimator
        Same class, configuration, weights, bounds, history; ``log_prob``
        reproduces the saved estimator's exactly.

    Raises
    ------
    FileNotFoundError
    ModelFileError
        A corrupted, truncated, foreign or newer-format file.
    """
    return _build(*_open(path), path)


def _build(meta, arrays, path):
    from margflow.bounds import Preprocessor
    from margflow.data import SampleData
    from margflow.estimator import DensityEstimator

    cls = DensityEstimator.registry.get(meta.get("class"))
    if cls is None:
        raise ModelFileError(
            f"{os.fspath(path)!r} holds a {meta.get('class')!r}, which this margflow does not know; "
            f"known: {sorted(DensityEstimator.registry)}"
        )
    try:
        pre = Preprocessor.from_state(
            {k[4:]: v for k, v in arrays.items() if k.startswith("pre.")}, meta["preprocessing"]
        )
        data = SampleData(
            theta=arrays["data.theta"],
            weights=arrays["data.weights"],
            params=list(meta["params"]),
            bounds=pre.box.bounds,
            logZ=meta["logZ"],
        )
        model = {k[6:]: v for k, v in arrays.items() if k.startswith("model.")}
        obj = cls._restore(data, pre, meta["seed"], meta["config"], model)
        obj.notes = dict(meta.get("notes", {}))  # files before the notes have none
        return obj
    except (KeyError, ValueError, TypeError) as err:
        if isinstance(err, ModelFileError):
            raise
        raise ModelFileError(f"{os.fspath(path)!r} is incomplete or inconsistent: {err!r}") from None
