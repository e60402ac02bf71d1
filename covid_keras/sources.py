"""Reading chest X-ray image trees from disk: layouts, robust decoding, the skip report, stable splits.

Pure python + numpy + PIL, so every rule here is unit-testable without TFDS; the TFDS builder in
`tfds_builders/covid_xray` is a thin wrapper around `read_image_tree` and `phantom_source`.

A source is a folder or a zip file holding `[top folder/]<class>/[images/]*.{png,jpg,jpeg}`:
the Kaggle COVID-19 Radiography Database in its old layout (`COVID/*.png`) or the newer one
(`COVID/images/*.png` next to `COVID/masks/`), zipped or extracted, with or without the archive's
`COVID-19_Radiography_Dataset/` top folder; or any other tree of that shape.

Nothing is silently dropped: every file that does not become an example is listed in the report,
either as `skipped` (an image we could not use, with the reason) or as `ignored` (masks, classes
outside the config, files outside class folders; grouped by folder with a count).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import os
import pathlib
import zipfile
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# Smaller images carry no usable chest X-ray (and every backbone here needs at least 32 px).
MIN_IMAGE_SIDE = 32
SPLIT_NAMES = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
MASK_FOLDER = "masks"
IMAGE_FOLDER = "images"
EXPECTED_LAYOUT = (
    "<root>/[top folder/]<class>/[images/]*.png|jpg|jpeg, e.g. COVID/images/COVID-1.png "
    "(newer Kaggle layout) or COVID/COVID-1.png (older layout); a folder or a .zip"
)
# Folders that archivers add and that never hold data (macOS resource forks).
_JUNK_TOP_FOLDERS = ("__MACOSX",)


class SourceError(ValueError):
    """A source that cannot be read at all: missing path, unrecognised layout, missing classes."""


class UnreadableImageError(ValueError):
    """One file that cannot be turned into a grey image; its message is the reason we report."""


# ----------------------------------------------------------------------------------------------
# File trees: a folder or a zip, seen as a sorted list of posix paths plus a way to read one.


class FileTree:
    """Files under a folder or inside a zip, addressed by posix paths relative to the tree root."""

    def __init__(self, description: str, files: Sequence[str], folders: Iterable[str]):
        self.description = description
        self.files = sorted(files)
        # Zips need not list folders, so every ancestor of a file counts as one.
        self.folders = {a for f in list(folders) + self.files for a in _ancestors(f)} | set(folders)

    def read(self, path: str) -> bytes:
        raise NotImplementedError


class FolderTree(FileTree):
    def __init__(self, root: pathlib.Path):
        self.root = root
        files, folders = [], []
        for dirpath, dirnames, filenames in os.walk(root):
            rel = pathlib.Path(dirpath).relative_to(root).as_posix()
            rel = "" if rel == "." else rel + "/"
            dirnames.sort()
            folders.extend(rel + d for d in dirnames)
            files.extend(rel + f for f in filenames)
        super().__init__(str(root), files, folders)

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()


class ZipTree(FileTree):
    def __init__(self, zip_path: pathlib.Path):
        self.zip_path = zip_path
        self._zip: zipfile.ZipFile | None = None
        names = self._archive().namelist()
        files = [n for n in names if not n.endswith("/")]
        folders = [n.rstrip("/") for n in names if n.endswith("/")]
        super().__init__(str(zip_path), files, folders)

    def _archive(self) -> zipfile.ZipFile:
        # Opened once and kept: re-opening a large zip for each member is slow.
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.zip_path)
        return self._zip

    def read(self, path: str) -> bytes:
        return self._archive().read(path)


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:n]) for n in range(1, len(parts))]


def open_tree(path: str | os.PathLike, classes: Sequence[str]) -> FileTree:
    """The folder or zip at `path`; a folder that holds no class folders but a zip opens the zip."""
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise SourceError(f"{path} does not exist; expected a folder or a .zip laid out as {EXPECTED_LAYOUT}")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise SourceError(f"{path} is a file but not a zip archive; expected a folder or a .zip laid out as {EXPECTED_LAYOUT}")
        return ZipTree(path)
    tree = FolderTree(path)
    if _find_root(tree, classes) is None:
        zips = sorted(f for f in tree.files if "/" not in f and f.lower().endswith(".zip"))
        for name in zips:
            zipped = ZipTree(path / name)
            if _find_root(zipped, classes) is not None:
                return zipped
    return tree


# ----------------------------------------------------------------------------------------------
# Layout: where the class folders are and where each keeps its images.


@dataclasses.dataclass(frozen=True)
class ClassFolder:
    class_name: str  # as the config spells it
    folder: str  # path in the tree, as the source spells it
    image_folder: str  # `folder/images` in the newer layout, else `folder`


@dataclasses.dataclass(frozen=True)
class Layout:
    root: str  # "" or the top folder(s), e.g. "COVID-19_Radiography_Dataset"
    class_folders: tuple[ClassFolder, ...]
    missing_classes: tuple[str, ...]
    ignored_classes: tuple[str, ...]  # sub-folders of root that are no class of this config


def _children(tree: FileTree, folder: str) -> list[str]:
    prefix = folder + "/" if folder else ""
    return sorted(
        f[len(prefix):]
        for f in tree.folders
        if f.startswith(prefix) and f != folder and "/" not in f[len(prefix):]
    )


def _find_root(tree: FileTree, classes: Sequence[str]) -> str | None:
    """The shallowest folder (depth <= 2) with the most sub-folders named like a class; None if none."""
    wanted = {c.lower() for c in classes}
    candidates = [""] + sorted(f for f in tree.folders if f and f.count("/") <= 1)
    best, best_score = None, 0
    for folder in candidates:
        if folder.split("/")[0] in _JUNK_TOP_FOLDERS:
            continue
        score = sum(child.lower() in wanted for child in _children(tree, folder))
        if score > best_score or (score == best_score and score and _depth(folder) < _depth(best)):
            best, best_score = folder, score
    return best if best_score else None


def _depth(folder: str) -> int:
    return -1 if folder == "" else folder.count("/")


def find_layout(tree: FileTree, classes: Sequence[str]) -> Layout:
    root = _find_root(tree, classes)
    if root is None:
        raise SourceError(
            f"unrecognised layout in {tree.description}: no folder named like a class "
            f"({', '.join(classes)}; case does not matter). Expected {EXPECTED_LAYOUT}"
        )
    by_lower = {c.lower(): c for c in classes}
    found: dict[str, ClassFolder] = {}
    ignored = []
    for child in _children(tree, root):
        folder = f"{root}/{child}" if root else child
        class_name = by_lower.get(child.lower())
        if class_name is None:
            ignored.append(child)
            continue
        if class_name in found:
            raise SourceError(
                f"two folders in {tree.description} match class {class_name!r}: "
                f"{found[class_name].folder!r} and {folder!r}"
            )
        images = f"{folder}/{IMAGE_FOLDER}"
        image_folder = images if images in tree.folders else folder
        found[class_name] = ClassFolder(class_name, folder, image_folder)
    return Layout(
        root=root,
        class_folders=tuple(found[c] for c in classes if c in found),
        missing_classes=tuple(c for c in classes if c not in found),
        ignored_classes=tuple(ignored),
    )


# ----------------------------------------------------------------------------------------------
# Decoding: any PNG/JPEG (whatever its name says) to grey uint8 [H, W].


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # uint8 [H, W]
    format: str  # what the bytes are ("PNG", "JPEG"), not what the name says
    mode: str  # PIL mode before conversion ("L", "RGB", "I;16", ...)
    has_transparency: bool = False


_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"))


def too_small(path: str | os.PathLike) -> str | None:
    """Why `prepare` would skip the image file at `path` for its size (from its header alone), else None.

    A file whose header cannot be read is left to the decoder that reads it next."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # PIL raises several types for "not an image"
        return None
    if min(width, height) < MIN_IMAGE_SIDE:
        return f"image too small: {width}x{height} px (the minimum is {MIN_IMAGE_SIDE} px a side, as for training data)"
    return None


def decode_grey(data: bytes) -> DecodedImage:
    """Decode PNG/JPEG bytes to grey uint8; raises UnreadableImageError with the reason."""
    if not data:
        raise UnreadableImageError("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except Exception as error:  # PIL raises several types for "not an image"
        signature = next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)
        if signature:  # cut off inside the header
            raise UnreadableImageError(f"truncated or corrupt {signature}: {error}") from None
        raise UnreadableImageError(f"not an image PIL can read ({type(error).__name__})") from None
    if image.format not in ("PNG", "JPEG"):
        raise UnreadableImageError(f"unsupported image format {image.format}")
    try:
        image.load()
    except Exception as error:  # truncated data raises OSError, broken chunks SyntaxError, ...
        raise UnreadableImageError(f"truncated or corrupt {image.format}: {error}") from None
    return DecodedImage(_to_grey_uint8(image), image.format, image.mode, "transparency" in image.info)


def _to_grey_uint8(image: Image.Image) -> np.ndarray:
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit grey: scale the full 16-bit range to 8 bits (a fixed map, not per-image contrast).
        wide = np.asarray(image, dtype=np.float64)
        return np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Drop alpha by compositing on black, the background of an X-ray.
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def pixel_hash(pixels: np.ndarray) -> str:
    """Identity of an image's content: equal for equal pixels, whatever the file or format."""
    digest = hashlib.sha1(str(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Items, the report and splits.


@dataclasses.dataclass(frozen=True)
class Item:
    """One example-to-be. `key` is `<class>/<path below the class's image folder>`: the same for a
    file whether it came from a zip or a folder, old or new layout, with or without a top folder."""

    key: str
    label: int
    pixel_hash: str
    png: Callable[[], bytes] = dataclasses.field(compare=False, repr=False)  # the grey image as PNG

    def pixels(self) -> np.ndarray:
        return decode_grey(self.png()).pixels


@dataclasses.dataclass
class PreparedSource:
    class_names: tuple[str, ...]
    splits: dict[str, list[Item]]
    report: dict

    @property
    def skipped_count(self) -> int:
        return len(self.report["skipped"])


def read_image_tree(
    path: str | os.PathLike,
    classes: Sequence[str],
    *,
    require_all_classes: bool = True,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> PreparedSource:
    """Scan, decode, de-duplicate and split the image tree at `path` (folder or zip).

    require_all_classes: a missing or empty class folder is an error (the Kaggle configs);
    otherwise it is recorded in the report (generated-image folders may hold one class only).
    progress: called as progress(done, total) while decoding.
    """
    tree = open_tree(path, classes)
    layout = find_layout(tree, classes)
    candidates, ignored = _assign_files(tree, layout)
    _check_classes(tree, layout, candidates, require_all_classes, stage="is empty")

    items, skipped, conversions = _decode_all(tree, layout, candidates, classes, progress)
    kept, duplicates, conflicts = group_duplicates(items)
    skipped.extend(conflicts)
    missing = _check_classes(
        tree, layout, {c: [i for i in kept if i.label == classes.index(c)] for c in classes},
        require_all_classes, stage="has no readable images",
    )
    splits = split_items(kept, seed=seed)
    report = {
        "source": tree.description,
        "root": layout.root,
        "layout": {cf.class_name: cf.image_folder for cf in layout.class_folders},
        "classes": list(classes),
        "seed": seed,
        "examples": sum(len(s) for s in splits.values()),
        "split_counts": split_counts(splits, classes),
        "skipped": skipped,
        "ignored": ignored,
        "ignored_classes": list(layout.ignored_classes),
        "missing_classes": missing,
        "duplicate_groups": duplicates,
        "conversions": conversions,
    }
    return PreparedSource(tuple(classes), splits, report)


def _assign_files(tree: FileTree, layout: Layout) -> tuple[dict[str, list[str]], list[dict]]:
    """Map each file to its class (by path) or to an `ignored` group with a reason and count."""
    candidates: dict[str, list[str]] = {cf.class_name: [] for cf in layout.class_folders}
    ignored: collections.Counter = collections.Counter()
    for file in tree.files:
        reason_group = None
        for cf in layout.class_folders:
            if file.startswith(cf.image_folder + "/"):
                candidates[cf.class_name].append(file)
                break
            if file.startswith(cf.folder + "/"):
                sub = file[len(cf.folder) + 1:].split("/")[0]
                is_mask = "/" in file[len(cf.folder) + 1:] and sub.lower() == MASK_FOLDER
                reason = "lung masks" if is_mask else f"outside the class's {IMAGE_FOLDER}/ folder"
                reason_group = (f"{cf.folder}/{sub}", reason)
                break
        else:
            reason_group = _ignored_outside_classes(file, layout)
        if reason_group is not None:
            ignored[reason_group] += 1
    ignored_list = [{"path": p, "reason": r, "files": n} for (p, r), n in sorted(ignored.items())]
    return candidates, ignored_list


def _ignored_outside_classes(file: str, layout: Layout) -> tuple[str, str]:
    root_prefix = layout.root + "/" if layout.root else ""
    if not file.startswith(root_prefix):
        return file.split("/")[0], "outside the dataset folder"
    rest = file[len(root_prefix):]
    if "/" not in rest:
        return file, "not in a class folder"
    folder = rest.split("/")[0]
    return root_prefix + folder, "class not in this config"


def _check_classes(tree, layout, per_class, require_all: bool, stage: str) -> list[dict]:
    """Missing/empty classes: an error if all are required, else returned for the report."""
    problems = [{"class": c, "reason": "no class folder"} for c in layout.missing_classes]
    folders = {cf.class_name: cf.image_folder for cf in layout.class_folders}
    problems += [
        {"class": c, "reason": f"folder {folders[c]!r} {stage}"}
        for c, files in per_class.items()
        if not files and c in folders
    ]
    classes_with_data = [c for c, files in per_class.items() if files]
    if problems and (require_all or not classes_with_data):
        details = "; ".join(f"{p['class']}: {p['reason']}" for p in problems)
        raise SourceError(f"{tree.description}: {details}. Expected {EXPECTED_LAYOUT}")
    return problems


def _decode_all(tree, layout, candidates, classes, progress):
    image_folders = {cf.class_name: cf.image_folder for cf in layout.class_folders}
    items, skipped = [], []
    conversions: collections.Counter = collections.Counter()
    total = sum(len(files) for files in candidates.values())
    done = 0
    for class_name, files in candidates.items():
        for file in files:
            done += 1
            if progress is not None:
                progress(done, total)
            item, problem, conversion = _read_item(tree, file, class_name, image_folders[class_name], classes)
            if problem is not None:
                skipped.append({"file": file, "reason": problem})
            else:
                items.append(item)
                if conversion:
                    conversions[conversion] += 1
    return items, skipped, dict(sorted(conversions.items()))


def _read_item(tree, file, class_name, image_folder, classes):
    """(item, None, conversion) for a usable image, (None, reason, None) otherwise."""
    extension = os.path.splitext(file)[1].lower()
    if extension not in IMAGE_EXTENSIONS:
        return None, f"not an image file (extension {extension or 'none'!r})", None
    try:
        data = tree.read(file)
    except OSError as error:  # a dangling symlink, a symlink loop, no permission, ...
        return None, f"unreadable file: {error.strerror or type(error).__name__}", None
    try:
        decoded = decode_grey(data)
    except UnreadableImageError as error:
        return None, str(error), None
    height, width = decoded.pixels.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        return None, f"image too small: {width}x{height} px (the minimum is {MIN_IMAGE_SIDE} px a side)", None
    key = f"{class_name}/{file[len(image_folder) + 1:]}"
    if _is_plain_grey_png(data, decoded):
        png = lambda: tree.read(file)  # noqa: E731  the file is stored as it is: no re-encoding
    else:
        png = lambda: encode_png(decode_grey(tree.read(file)).pixels)  # noqa: E731
    item = Item(key=key, label=classes.index(class_name), pixel_hash=pixel_hash(decoded.pixels), png=png)
    return item, None, _conversion(decoded, extension)


def _is_plain_grey_png(data: bytes, decoded: DecodedImage) -> bool:
    """An 8-bit grey PNG without transparency: PIL and TF decode it to the same pixels."""
    # IHDR is the first chunk: bit depth at byte 24, colour type (0 = grey) at byte 25.
    header_ok = data[12:16] == b"IHDR" and data[24] == 8 and data[25] == 0
    return decoded.format == "PNG" and decoded.mode == "L" and not decoded.has_transparency and header_ok


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Level 1: ~3x faster than the default 6 for ~15% larger files; builds are dominated by this.
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _conversion(decoded: DecodedImage, extension: str) -> str | None:
    named = "JPEG" if extension in (".jpg", ".jpeg") else "PNG"
    notes = []
    if decoded.format != named:
        notes.append(f"{decoded.format} data named {extension}")
    if decoded.mode != "L":
        notes.append(f"{decoded.mode} -> L")
    return "; ".join(notes) or None


def group_duplicates(items: Sequence[Item]) -> tuple[list[Item], list[list[str]], list[dict]]:
    """Group items with identical pixels.

    Returns (kept items, duplicate groups within one class as lists of keys, skipped entries).
    A group within one class is kept whole (split_items keeps it in one split); a group whose
    members carry different labels is a label conflict: all its members are skipped.
    """
    by_hash: dict[str, list[Item]] = collections.defaultdict(list)
    for item in items:
        by_hash[item.pixel_hash].append(item)
    kept, duplicates, skipped = [], [], []
    for group in by_hash.values():
        keys = sorted(i.key for i in group)
        if len({i.label for i in group}) > 1:
            skipped += [
                {"file": i.key, "reason": f"identical pixels under different classes: {', '.join(keys)}"}
                for i in group
            ]
            continue
        if len(group) > 1:
            duplicates.append(keys)
        kept += group
    return kept, sorted(duplicates), skipped


def _rank(seed: int, key: str) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def split_items(
    items: Sequence[Item], seed: int = 0, fractions: Sequence[float] = SPLIT_FRACTIONS
) -> dict[str, list[Item]]:
    """Split 60/20/20 per class, stable and seeded, never splitting a group of identical pixels.

    Each class's pixel groups are ordered by a seeded hash of their smallest key and cut at the
    target counts (round(0.6 n), round(0.2 n), rest). The order depends only on the keys, so the
    same files give the same splits on every build, from a zip or a folder alike.
    """
    splits: dict[str, list[Item]] = {name: [] for name in SPLIT_NAMES}
    by_class: dict[int, dict[str, list[Item]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for item in items:
        by_class[item.label][item.pixel_hash].append(item)
    for label in sorted(by_class):
        groups = sorted(by_class[label].values(), key=lambda g: _rank(seed, min(i.key for i in g)))
        total = sum(len(g) for g in groups)
        targets = _split_targets(total, fractions)
        counts = [0] * len(SPLIT_NAMES)
        for group in groups:
            index = next((s for s in range(len(SPLIT_NAMES) - 1) if counts[s] < targets[s]), len(SPLIT_NAMES) - 1)
            counts[index] += len(group)
            splits[SPLIT_NAMES[index]].extend(sorted(group, key=lambda i: i.key))
    for name in SPLIT_NAMES:
        splits[name].sort(key=lambda i: i.key)
    return splits


def _split_targets(total: int, fractions: Sequence[float]) -> list[int]:
    train = round(total * fractions[0])
    validation = min(round(total * fractions[1]), total - train)
    return [train, validation, total - train - validation]


def split_counts(splits: dict[str, list[Item]], classes: Sequence[str]) -> dict[str, dict[str, int]]:
    return {
        name: {c: sum(1 for i in items if i.label == label) for label, c in enumerate(classes)}
        for name, items in splits.items()
    }


def balanced_keys(keys: Sequence[str], labels: Sequence[int], seed: int = 0) -> set[str]:
    """The study's class balance: keep every class's `min count` items, chosen stably by hash."""
    by_label: dict[int, list[str]] = collections.defaultdict(list)
    for key, label in zip(keys, labels):
        by_label[int(label)].append(key)
    if not by_label:
        return set()
    smallest = min(len(v) for v in by_label.values())
    return {k for v in by_label.values() for k in sorted(v, key=lambda k: _rank(seed, k))[:smallest]}


# ----------------------------------------------------------------------------------------------
# The built-in synthetic source.


def phantom_source(
    per_class: int, classes: Sequence[str], seed: int = 0, size: int = 299,
    progress: Callable[[int, int], None] | None = None,
) -> PreparedSource:
    """The synthetic phantoms (covid_keras.phantom), split and de-duplicated like files on disk."""
    from covid_keras import (
        phantom,  # imported here: reading files never needs the renderer
    )

    items = []
    total = per_class * len(classes)
    for done, (key, label, image) in enumerate(phantom.iter_phantoms(per_class, seed=seed, size=size), 1):
        if progress is not None:
            progress(done, total)
        items.append(Item(f"{classes[label]}/{key}.png", label, pixel_hash(image), _png_of(image)))
    kept, duplicates, conflicts = group_duplicates(items)
    splits = split_items(kept, seed=seed)
    report = {
        "source": f"covid_keras.phantom (synthetic, {per_class} per class, {size} px, seed {seed})",
        "classes": list(classes),
        "seed": seed,
        "examples": sum(len(s) for s in splits.values()),
        "split_counts": split_counts(splits, classes),
        "skipped": conflicts,
        "ignored": [],
        "duplicate_groups": duplicates,
    }
    return PreparedSource(tuple(classes), splits, report)


def _png_of(image: np.ndarray) -> Callable[[], bytes]:
    return lambda: encode_png(image)


def iter_examples(items: Iterable[Item]) -> Iterator[tuple[str, dict]]:
    """(key, TFDS example) pairs; the image is a grey PNG at the source's size."""
    for item in items:
        yield item.key, {"image": item.png(), "label": item.label, "file_name": item.key}
