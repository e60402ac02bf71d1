"""What every script does with a user's mistake and with its outputs: one `error:` line, nothing lost.

- `ArgumentParser`: argparse whose errors are one line, `error: argument --epochs: ...`, exit code 2.
- `positive_int`: an argparse type for counts and sizes (0 and negatives are refused by name).
- `add_data_arguments`: the same data flags on every command, `--data CONFIG`, `--data-path PATH`
  (`--manual-dir` is its older name), `--data-dir DIR`.
- `run(main)`: calls a script's `main(argv)`; a user error (`UsageError`, `ValueError`, `OSError`
  and whatever the script adds) becomes `error: <message>` on stderr and exit code 2, without a
  traceback. `COVID_KERAS_TRACEBACK=1` shows the traceback, to debug the library itself. Under a
  TF_CONFIG naming several processes it refuses every command but the two that train on several.
- `OutputFolder` / `OutputFile`: checked when made, before any work starts (refused when the
  folder holds anything or the file exists, unless overwrite; refused when it cannot be created);
  written under a temporary sibling that is renamed into place only when the work succeeds, so a
  crash or a kill never leaves a half-written output, nor loses the earlier one.

- `library_noise_to(log)`: libraries' warnings and native logs (TensorFlow's retracing warnings,
  CUDA probes, deprecations) go to a log file instead of the terminal, for a command's normal runs.

Imports only `covid_keras.choices` and `covid_keras.cluster`, no TensorFlow, so a script can check its arguments first.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Callable, Iterator, Mapping, Sequence

from covid_keras import cluster
from covid_keras.choices import DATA_CONFIGS

EXIT_USAGE = 2  # argparse's code for a bad command line; every user error gets it
TRACEBACK_VARIABLE = "COVID_KERAS_TRACEBACK"


class UsageError(Exception):
    """A mistake in how a command was called; its message names the flag or the path."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (usage and --help stay as they are)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message}\n")


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_data_arguments(
    parser: argparse.ArgumentParser,
    default: str | None = None,
    required: bool = False,
    what: str = "the data",
    old_names: tuple[str, str] | None = None,
) -> None:
    """`--data CONFIG`, `--data-path PATH` (dest `data_path`; `--manual-dir` too) and `--data-dir DIR`.

    `what` says which data in the help; `old_names`: a command's earlier names for the first two
    flags, still accepted."""
    shown = f" (default {default})" if default else ""
    config_names, path_names = ("--data",), ("--data-path", "--manual-dir")
    if old_names:
        config_names, path_names = config_names + (old_names[0],), path_names + (old_names[1],)
    parser.add_argument(*config_names, dest="data", default=default, required=required, choices=DATA_CONFIGS,
                        help=f"{what}: a covid_xray config{shown}")
    parser.add_argument(*path_names, dest="data_path", default=None,
                        help="radiography: the Kaggle download (zip or folder); folder: the ROOT/<class>/ tree")
    parser.add_argument("--data-dir", default=None, help="TFDS data dir for the prepared data (default: TFDS's own)")


def one_line(message: str) -> str:
    """A (possibly multi-line) exception message as one line, so `error:` stays the last line."""
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def run(main: Callable, argv: Sequence[str] | None = None, errors: tuple[type[BaseException], ...] = (),
        several_workers: bool = False) -> int:
    """The exit code of `main(argv)`: its int, 0 for anything else, EXIT_USAGE for a user error.

    `errors` adds exception types that mean a user error for this script (e.g. a server's refusal).
    `several_workers`: the command trains under a multi-worker TF_CONFIG; any other is refused
    when TF_CONFIG names several processes, since each would run it whole into the same outputs.
    """
    try:
        if not several_workers:
            _refuse_several_workers(sys.argv[1:] if argv is None else argv)
        code = main(argv)
    except (UsageError, ValueError, OSError, *errors) as error:
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        sys.stdout.flush()  # what was printed before the error comes before it
        print(f"error: {one_line(error) or type(error).__name__}", file=sys.stderr)
        return EXIT_USAGE
    return code if isinstance(code, int) else 0


def _refuse_several_workers(argv: Sequence[str]) -> None:
    if "-h" in argv or "--help" in argv:
        return
    workers = cluster.cluster_workers()
    if workers > 1:
        raise UsageError(f"${cluster.TF_CONFIG} names {workers} processes, but this command runs on one machine: "
                         "each worker would run it whole into the same outputs. Only train-gan, train-classifier, study "
                         f"and reproduce train on several (docs/distributed.md); unset {cluster.TF_CONFIG} to run it here")


# --------------------------------------------------------------------------- outputs


def _check_can_create(path: pathlib.Path, flag: str) -> None:
    """The nearest existing ancestor of `path` must be a writable folder."""
    ancestor = path.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{flag} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot create it, {ancestor} is not writable")


def check_folder(path: str | os.PathLike, flag: str) -> pathlib.Path:
    """A folder a command writes into (new or existing): it must be, or be creatable as, a folder."""
    path = pathlib.Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {path} is not writable")
    else:
        _check_can_create(path, flag)
    return path


def _is_within(inner: pathlib.Path, outer: pathlib.Path) -> bool:
    inner, outer = inner.resolve(), outer.resolve()
    return inner == outer or outer in inner.parents


def _default_mode(mode: int) -> int:
    """`mode` less the umask: what a plain mkdir/open would give (tempfile's are owner-only)."""
    umask = os.umask(0)  # the only way to read it; set straight back
    os.umask(umask)
    return mode & ~umask


class _Output:
    """What an output folder and an output file share: the checks made before any work starts."""

    _refusal = ""

    def __init__(self, path: pathlib.Path, overwrite: bool, flag: str, inputs: Mapping[str, str | None] | None):
        self.path = path
        self.overwrite = overwrite
        self.flag = flag
        # Replacing an output deletes what it held: never an input of the same command.
        for input_flag, input_path in (inputs or {}).items():
            if input_path and os.path.exists(input_path) and _is_within(pathlib.Path(input_path), path):
                raise UsageError(f"{flag} {path} holds {input_flag} {input_path}; choose another {flag}")
        self._check_free()

    def _taken(self) -> bool:
        raise NotImplementedError

    def _check_free(self, meanwhile: str = "") -> None:
        if not self.overwrite and self._taken():
            raise UsageError(f"{self.path} {self._refusal}{meanwhile}; pass --overwrite to replace it")


class OutputFolder(_Output):
    """An output folder: refused when it holds anything (unless overwrite), written whole or not at all.

        out = OutputFolder(args.out, args.overwrite)       # first thing: refuses before any work
        ...
        with out.writing() as folder:                      # a temporary sibling of out.path
            save_everything(folder)                        # renamed to out.path when this succeeds

    `inputs` ({flag: path}) are refused inside the folder, since replacing it would delete them.
    `writing(resumable=True)` keeps the temporary folder when the work fails and reuses it on the
    next try, for work that resumes from what it left (a feature cache); otherwise a failed try
    leaves nothing behind.
    """

    _refusal = "is not empty"

    def __init__(self, path, overwrite: bool = False, flag: str = "--out", inputs: Mapping[str, str | None] | None = None):
        super().__init__(check_folder(path, flag), overwrite, flag, inputs)

    def _taken(self) -> bool:
        return self.path.is_dir() and any(self.path.iterdir())

    @contextlib.contextmanager
    def writing(self, resumable: bool = False) -> Iterator[pathlib.Path]:
        parent = self.path.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        if resumable:
            temporary = parent / f".{self.path.name}.partial"
            temporary.mkdir(exist_ok=True)
        else:
            temporary = pathlib.Path(tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=parent))
            temporary.chmod(_default_mode(0o777))
        keep = resumable
        try:
            yield temporary
            keep = True  # it holds finished work now: an error below must not delete it
            self._check_free(f" (something wrote into it meanwhile; the new output is in {temporary})")
            self._move_into_place(temporary)
        finally:
            if not keep and temporary.exists():
                shutil.rmtree(temporary)
            elif resumable and temporary.exists() and not any(temporary.iterdir()):
                temporary.rmdir()  # nothing to resume from

    def _move_into_place(self, new: pathlib.Path) -> None:
        if not self._taken():  # absent or empty: one atomic rename (it may replace an empty folder)
            os.replace(new, self.path)
            return
        # Two renames: a kill between them leaves the earlier output whole in `old`, never lost.
        old = pathlib.Path(tempfile.mkdtemp(prefix=f".{self.path.name}.old-", dir=new.parent))
        os.replace(self.path, old / self.path.name)
        os.replace(new, self.path)
        shutil.rmtree(old)


class OutputFile(_Output):
    """An output file: refused when it exists (unless overwrite); replaced atomically when written.

        with OutputFile(args.preview, args.overwrite, "--preview").writing() as path:
            save_png(path)                                 # the same suffix, for formats chosen by name
    """

    _refusal = "exists"

    def __init__(self, path, overwrite: bool = False, flag: str = "--out", inputs: Mapping[str, str | None] | None = None):
        path = pathlib.Path(path)
        if path.is_dir():
            raise UsageError(f"{flag} {path} is a folder, not a file")
        _check_can_create(path, flag)
        super().__init__(path, overwrite, flag, inputs)

    def _taken(self) -> bool:
        return os.path.lexists(self.path)

    @contextlib.contextmanager
    def writing(self) -> Iterator[pathlib.Path]:
        parent = self.path.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{self.path.stem}.partial-", suffix=self.path.suffix, dir=parent)
        os.close(handle)
        temporary = pathlib.Path(name)
        temporary.chmod(_default_mode(0o666))
        keep = False
        try:
            yield temporary
            keep = True
            self._check_free(f" (something wrote it meanwhile; the new file is {temporary})")
            os.replace(temporary, self.path)
        finally:
            if not keep and temporary.exists():
                temporary.unlink()


@contextlib.contextmanager
def library_noise_to(log_path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Send what libraries say on their own to `log_path` (appended) while the block runs.

    Python logging (TensorFlow's and absl's loggers: retracing warnings, TFDS notices) and Python
    warnings go to the file through the root logger; native logs written to file descriptor 2
    (TensorFlow's C++ messages) go there too. Python's own `sys.stderr` stays on the terminal, so a
    command's messages, progress bars and `error:` line are still seen.
    """
    path = pathlib.Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    log = open(path, "a", buffering=1)
    saved_fd = os.dup(2)
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    saved_stderr = sys.stderr
    root = logging.getLogger()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Loggers that print on their own (TensorFlow adds a stderr handler when the root has none).
    named = {name: logging.getLogger(name) for name in ("tensorflow", "absl", "py.warnings")}
    saved = {name: (logger.handlers[:], logger.propagate) for name, logger in named.items()}
    os.dup2(log.fileno(), 2)
    sys.stderr = terminal
    root.addHandler(handler)
    for logger in named.values():
        logger.handlers, logger.propagate = [], True
    logging.captureWarnings(True)
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        for name, (handlers, propagate) in saved.items():
            named[name].handlers, named[name].propagate = handlers, propagate
        root.removeHandler(handler)
        sys.stderr = saved_stderr
        terminal.flush()
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        terminal.close()
        log.close()
