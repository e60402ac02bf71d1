"""What every script does with a user's mistake and with its outputs: one `error:` line, nothing lost.

- `ArgumentParser`: argparse whose errors are one line, `error: argument --epochs: ...`, exit code 2.
- Numeric argparse types, one set for every command: `positive_int`, `non_negative_int`, `finite_float`,
  `positive_float`, `non_negative_float`, `probability` (NaN and infinities are refused by name).
- `ArgumentParser.declare_paths(inputs=..., outputs=...)`: which flags a command reads and which it
  writes; `parse_args` refuses an output that is, holds or sits inside an input (`check_overlap`),
  with or without `--overwrite`, before anything runs: replacing an output deletes what it held.
- `add_data_arguments`: the same data flags on every command, `--data CONFIG`, `--data-path PATH`
  (`--manual-dir` is its older name), `--data-dir DIR`.
- `run(main)`: calls a script's `main(argv)`; a user error (`UsageError`, `ValueError`, `OSError`
  and whatever the script adds) becomes `error: <message>` on stderr and exit code 2, without a
  traceback. `COVID_KERAS_TRACEBACK=1` shows the traceback, to debug the library itself. Under a
  TF_CONFIG naming several processes it refuses every command but the two that train on several.
- `one_writer(folder)`: the lock a long writer of a resumable folder (a GAN run, a study) holds
  throughout, so a second process on the same folder is refused, naming the holder.
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
import datetime
import fcntl
import json
import logging
import math
import os
import pathlib
import re
import shutil
import socket
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
    """argparse with a one-line error (usage and --help stay as they are), and the overlap rule.

        parser.declare_paths(inputs=("--model", "--data-path", "files"), outputs=("--report",))

    names (an option string, or a positional's dest) the paths the command reads and those it
    writes; `parse_args` then refuses any output that is, holds or sits inside an input."""

    path_inputs: tuple[str, ...] = ()
    path_outputs: tuple[str, ...] = ()

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message}\n")

    def declare_paths(self, inputs: Sequence[str] = (), outputs: Sequence[str] = ()) -> None:
        for name in (*inputs, *outputs):
            self.action_of(name)  # a misspelt name fails here, in every test that builds the parser
        self.path_inputs, self.path_outputs = tuple(inputs), tuple(outputs)

    def action_of(self, name: str) -> argparse.Action:
        """The action of an option string (`--out`) or of a positional's dest (`files`)."""
        if name in self._option_string_actions:
            return self._option_string_actions[name]
        for action in self._actions:
            if not action.option_strings and action.dest == name:
                return action
        raise KeyError(f"{self.prog}: no argument {name!r} to declare")

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        if self.path_outputs:
            values = lambda names: {self._label(name): getattr(parsed, self.action_of(name).dest, None)  # noqa: E731
                                    for name in names}
            try:
                check_overlap(values(self.path_outputs), values(self.path_inputs))
            except UsageError as error:
                self.error(str(error))
        return parsed

    def _label(self, name: str) -> str:
        return name if name.startswith("-") else name.upper()


def _paths(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def check_overlap(outputs: Mapping[str, object], inputs: Mapping[str, object]) -> None:
    """Refuse an output that is, holds or sits inside an existing input, or that is the working folder.

    `outputs`, `inputs`: {flag: path, list of paths or None}. Paths are compared after resolving
    symbolic links, so a link to an input is that input."""
    here = pathlib.Path.cwd().resolve()
    for output_flag, output_value in outputs.items():
        for output in _paths(output_value):
            if not output.strip():
                raise UsageError(f"{output_flag} is empty; name a folder or file")
            resolved = pathlib.Path(output).resolve()
            if resolved == here or resolved in here.parents:
                raise UsageError(f"{output_flag} {output} is the working folder or holds it; name a folder below it")
            for input_flag, input_value in inputs.items():
                for given in _paths(input_value):
                    if not given or not os.path.lexists(given):
                        continue  # what does not exist cannot be lost
                    source = pathlib.Path(given).resolve()
                    if source == resolved:
                        how = "is"
                    elif resolved in source.parents:
                        how = "holds"
                    elif source in resolved.parents:
                        how = "sits inside"
                    else:
                        continue
                    raise UsageError(f"{output_flag} {output} {how} {input_flag} {given}: an output never replaces "
                                     f"or mixes with an input, even with --overwrite; choose another {output_flag}")


def _number(text: str, kind: type, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    value = _number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number of at least 0."""
    value = _number(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def finite_float(text: str) -> float:
    """argparse type: any finite number (NaN and infinities mean nothing to a command)."""
    return _number(text, float, "a number")


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0 (learning rates, minutes)."""
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number of at least 0 (loss weights, blur sigmas)."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def probability(text: str) -> float:
    """argparse type: a finite number in [0, 1]."""
    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


NUMERIC_TYPES = (positive_int, non_negative_int, finite_float, positive_float, non_negative_float, probability)


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


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (one we may not signal runs too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _partial_prefix(name: str) -> str:
    """The temporary sibling's name: its writer's host and pid, so the next run can tell a leftover."""
    return f".{name}.partial-{socket.gethostname()}-{os.getpid()}-"


def remove_leftover_partials(parent: pathlib.Path, name: str) -> list[pathlib.Path]:
    """Remove the temporary siblings of output `name` left by killed writers on this machine.

    Only those whose writer (host and pid in the name) is dead: another run may be writing its own."""
    pattern = re.compile(re.escape(f".{name}.partial-") + r"(?P<host>.+)-(?P<pid>\d+)-[^-]+$")
    host, removed = socket.gethostname(), []
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        match = pattern.match(entry.name)
        if not match or match["host"] != host or process_alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


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
        if path.name in ("", ".", ".."):  # its temporary sibling and the final rename need a name
            raise UsageError(f"{flag} {str(path)!r}: name the output itself (e.g. {flag} runs/name), not '.' or ''")
        # Replacing an output deletes what it held: never an input of the same command.
        check_overlap({flag: str(path)}, inputs or {})
        self._check_free()

    def _taken(self) -> bool:
        raise NotImplementedError

    @contextlib.contextmanager
    def _naming_the_output(self) -> Iterator[None]:
        """A failed write(2) (a full disk) names no file: name the output it was writing."""
        try:
            yield
        except OSError as error:
            if error.filename is not None or error.errno is None:
                raise
            raise type(error)(error.errno, error.strerror or str(error), str(self.path)) from error

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
            remove_leftover_partials(parent, self.path.name)
            temporary = pathlib.Path(tempfile.mkdtemp(prefix=_partial_prefix(self.path.name), dir=parent))
            temporary.chmod(_default_mode(0o777))
        keep = resumable
        try:
            with self._naming_the_output():
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
        remove_leftover_partials(parent, self.path.stem)
        handle, name = tempfile.mkstemp(prefix=_partial_prefix(self.path.stem), suffix=self.path.suffix, dir=parent)
        os.close(handle)
        temporary = pathlib.Path(name)
        temporary.chmod(_default_mode(0o666))
        keep = False
        try:
            with self._naming_the_output():
                yield temporary
            keep = True
            self._check_free(f" (something wrote it meanwhile; the new file is {temporary})")
            os.replace(temporary, self.path)
        finally:
            if not keep and temporary.exists():
                temporary.unlink()


# --------------------------------------------------------------------------- one writer per folder


def lock_path(folder: str | os.PathLike) -> pathlib.Path:
    """The lock file of a folder: a hidden sibling, so the folder's own contents stay the command's."""
    folder = pathlib.Path(folder).absolute()
    return folder.parent / f".{folder.name}.lock"


def _holder_text(holder: Mapping) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


@contextlib.contextmanager
def one_writer(folder: str | os.PathLike, flag: str = "--out") -> Iterator[pathlib.Path]:
    """Hold `folder`'s lock for the whole block; refuse (UsageError naming the holder) when another
    process holds it.

    The kernel's flock, released when its holder dies however it dies, so the lock of a killed run
    is taken over at once; the file records the holder's pid, host and start time, to name it in the
    refusal and to say when a dead holder's lock is taken over. A clean end removes the file."""
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise UsageError(f"{flag} {folder} is being written by {_holder_text(holder)} (lock {path}): "
                             "one writer per folder; wait for it to end or stop it") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder removed the file as we locked it: lock the new one
    try:
        earlier = _read_holder(fd)
        if earlier:  # a holder that died without releasing it: its lock is ours now
            print(f"{flag} {folder}: taking over the lock of {_holder_text(earlier)}, which is no longer running",
                  file=sys.stderr)
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        yield path
        # Removed while still held, so a process that opened it meanwhile sees it gone and retries.
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)  # releases the flock


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
