"""Writing files so that a kill at any moment leaves the old file or the new one, never half of one,
and reading JSON with errors that name the file. Imports nothing heavy."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import resource
import shutil
from typing import Any


def _named(error: OSError, path: pathlib.Path) -> OSError:
    """`error` as the same OSError naming `path` (a failed write(2) names no file: disk full says only that)."""
    if error.filename:
        return error
    return type(error)(error.errno, error.strerror or str(error), str(path))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a temporary sibling, flush it to disk, then rename it onto `path`.

    A failure (a full disk, a read-only folder) raises an OSError naming `path`, which is left as it was."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _named(error, path) from error


# h5py writes its metadata besides the arrays; this much more than them must be free.
WEIGHTS_MARGIN = 1.1
WEIGHTS_OVERHEAD_BYTES = 1 << 20
_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int32": 4, "int64": 8, "uint8": 1, "bool": 1}


def weights_bytes(model) -> int:
    """What `model`'s variables take, a lower bound on its `.weights.h5` file."""
    total = 0
    for variable in model.weights:
        count = 1
        for side in variable.shape:
            count *= int(side or 1)
        total += count * _DTYPE_BYTES.get(str(getattr(variable, "dtype", "float32")), 4)
    return total


def atomic_save_weights(model, path: str | os.PathLike) -> None:
    """`model.save_weights` to a temporary sibling, renamed onto `path` (a `.weights.h5` file).

    Free space is checked first: h5py can crash the process on a full disk rather than raise. A
    failure raises an OSError naming `path`, which is left as it was."""
    path = pathlib.Path(path)
    # Keras insists on the .weights.h5 suffix, so the temporary name keeps it.
    tmp = path.with_name(f".tmp-{path.name}")
    needed = int(weights_bytes(model) * WEIGHTS_MARGIN) + WEIGHTS_OVERHEAD_BYTES
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device (about {needed / 2**20:.0f} MB needed, "
                                    f"{free / 2**20:.0f} MB free)", str(path))
    largest = resource.getrlimit(resource.RLIMIT_FSIZE)[0]  # ulimit -f: the same crash past it
    if largest != resource.RLIM_INFINITY and largest < needed:
        raise OSError(errno.EFBIG, f"File too large (about {needed / 2**20:.0f} MB needed, the file size limit "
                                   f"is {largest / 2**20:.1f} MB)", str(path))
    try:
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _named(error, path) from error


def read_json(path: str | os.PathLike, what: str = "JSON") -> Any:
    """The JSON in `path`; FileNotFoundError / ValueError naming the file (and `what` it should hold)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing ({what})")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({what}): {error}") from error


def atomic_write_json(path: str | os.PathLike, value: Any, **dumps_options) -> None:
    """`value` as indented JSON (plus `json.dumps` options), written atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, **dumps_options) + "\n")


def json_default(value):
    """`json.dumps(default=...)` for what reports hold besides plain types: numpy scalars and arrays
    (by their `item` / `tolist`, without importing numpy here) and paths."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")
