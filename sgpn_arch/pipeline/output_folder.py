"""The output folder of ``sgpn restore`` (GFPGAN's layout): a distinct name per input, each input's files
written all or none, and the completeness test behind ``--skip-existing``."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .image_io import OUTPUT_FORMATS, check_format, write_image

logger = logging.getLogger(__name__)


def output_names(files: list[Path]) -> dict[Path, str]:
    """Base name of each input's outputs: its stem, or ``stem_ext`` where inputs share a stem (``a.jpg``, ``a.png``).

    Names are compared case-insensitively (``A.jpg`` and ``a.png`` collide on Windows and macOS) and stay
    the same from one run to the next over the same inputs.
    """
    stems = Counter(p.stem.lower() for p in files)
    taken = {p.stem.lower() for p in files if stems[p.stem.lower()] == 1}
    names = {}
    for path in files:
        if stems[path.stem.lower()] == 1:
            names[path] = path.stem
            continue
        base = f"{path.stem}_{path.suffix.lstrip('.')}" if path.suffix else path.stem
        name, k = base, 1
        while name.lower() in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name.lower())
        names[path] = name
    return names


@dataclass(frozen=True)
class OutputFolder:
    """Where the files of one restore go. ``suffix`` is appended to restored faces and images (GFPGAN's
    ``--suffix``); ``ext`` is the whole image's format (``"auto"``: the input's when it can hold the result,
    else PNG)."""

    root: Path
    suffix: str = ""
    ext: str = "auto"

    def image_ext(self, image: np.ndarray, source: Path) -> str:
        """Extension of the restored whole image for input ``source`` holding ``image``."""
        if self.ext != "auto":
            return "." + self.ext.lower().lstrip(".")
        ext = source.suffix.lower()
        if ext in OUTPUT_FORMATS and image.dtype in OUTPUT_FORMATS[ext][0]:
            try:
                check_format(image, ext)
                return ext
            except ValueError:
                pass
        return ".png"

    def _tail(self) -> str:
        return f"_{self.suffix}" if self.suffix else ""

    def key_file(self, name: str, ext: str | None, whole_image: bool) -> Path:
        """The file written last for input ``name``: its presence means the whole set was written."""
        if whole_image:
            return self.root / "restored_imgs" / f"{name}{self._tail()}{ext}"
        return self.root / "restored_faces" / f"{name}_00{self._tail()}.png"

    def is_complete(self, name: str, whole_image: bool) -> bool:
        """True when a previous run wrote every file of input ``name`` (``--skip-existing``)."""
        if not whole_image:
            return self.key_file(name, None, False).is_file()
        exts = ["." + self.ext.lower().lstrip(".")] if self.ext != "auto" else list(OUTPUT_FORMATS)
        return any(self.key_file(name, ext, True).is_file() for ext in exts)

    def files_of(self, name: str, result, image: np.ndarray, source: Path) -> list[tuple[Path, np.ndarray]]:
        """``(path, image)`` of every file of one restore, the key file last."""
        tail = self._tail()
        files, restored = [], []
        for k, (crop, render, face) in enumerate(zip(result.cropped_faces, result.renders, result.restored_faces)):
            files += [(self.root / "cropped_faces" / f"{name}_{k:02d}.png", crop),
                      (self.root / "renders" / f"{name}_{k:02d}.png", render),
                      (self.root / "cmp" / f"{name}_{k:02d}.png", np.hstack([crop, render, face]))]
            restored.append((self.root / "restored_faces" / f"{name}_{k:02d}{tail}.png", face))
        files += restored[1:] + restored[:1]
        if result.restored_image is not None:
            ext = self.image_ext(image, source)
            files.append((self.key_file(name, ext, True), result.restored_image))
        return files


def write_all_or_none(files: list[tuple[Path, np.ndarray]]) -> None:
    """Write every file atomically; on any error or interruption remove those already written and re-raise."""
    for path, image in files:
        check_format(image, path.suffix)
    written = []
    try:
        for path, image in files:
            written.append(write_image(path, image))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
