"""Writing files so that a kill at any moment leaves the old file or the new one, never half of one,
and reading JSON with errors that name the file. Imports nothing heavy."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a temporary sibling, flush it to disk, then rename it onto `path`."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_save_weights(model, path: str | os.PathLike) -> None:
    """`model.save_weights` to a temporary sibling, renamed onto `path` (a `.weights.h5` file)."""
    path = pathlib.Path(path)
    # Keras insists on the .weights.h5 suffix, so the temporary name keeps it.
    tmp = path.with_name(f".tmp-{path.name}")
    model.save_weights(tmp, overwrite=True)
    os.replace(tmp, path)


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
