"""The official SGPN release bundle: download it, unpack it, recognise its members, install them.

The SGPN authors publish one Google Drive file (linked from their GitHub README) holding the generator
(``sgpn.pth``), the fine-tuned D3DFR (``d3dfr_finetune_ours.pth``), their YOLOv5-face detector and the
converted BFM folder (``BFM09_model_info.mat``, ``similarity_Lm3D_all.mat``, ``std_exp.txt``).
:func:`download_bundle` fetches it with ``gdown``; :func:`install_bundle` takes a bundle downloaded by hand
(an archive in any format Python reads, a single checkpoint, or an extracted folder).

Members are recognised by their content — the state-dict layout of a checkpoint
(:mod:`sgpn_arch.zoo.checkpoint_layouts`), the variables of a ``.mat`` file, the numbers of ``std_exp.txt`` —
never by their file names, which only break a tie between two files of the same kind. Everything is checked
in a staging folder inside ``weights_dir()`` before the first file is moved into place, so a bad bundle
leaves the cache as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..pipeline.image_io import write_bytes_atomic
from .weights import (BFM_FILES, BFM_SUBDIR, DEFAULT_TIMEOUT, MODEL_ZOO, WeightsError, installed_bfm_folder,
                      root_cause, sha256sum, weights_dir)

logger = logging.getLogger(__name__)

OFFICIAL_BUNDLE_ID = "14GsUEJHJxDpJSiZRFB0Eo9oGcshcI6a3"
OFFICIAL_BUNDLE_PAGE = f"https://drive.google.com/file/d/{OFFICIAL_BUNDLE_ID}/view"
BUNDLE_URL_ENV = "SGPN_BUNDLE_URL"        # another address of the same bundle (a mirror, a local server)
MANIFEST = "bundle.json"                  # in weights_dir(): what the last install put there
HOW_TO_GET_BUNDLE = (f"Get the official SGPN release bundle with `sgpn weights download` (needs the network), or "
                     f"download it in a browser from {OFFICIAL_BUNDLE_PAGE} and run `sgpn weights import PATH` "
                     f"(archive or extracted folder); {BUNDLE_URL_ENV} points the download at a mirror, "
                     f"SGPN_WEIGHTS_DIR sets where it is installed.")
BFM_LICENCE = ("The BFM files come from the Basel Face Model 2009 (University of Basel), licensed for non-commercial "
               "research only; by using them you accept its licence (https://faces.dmi.unibas.ch/bfm/). The SGPN "
               "weights are licensed by Tencent for academic research only.")

# What each recognisable member becomes in weights_dir(): role -> installed relative path.
ROLE_TARGETS = {
    "sgpn": MODEL_ZOO["sgpn"].filename,
    "d3dfr": MODEL_ZOO["d3dfr"].filename,
    "bfm_model_info": f"{BFM_SUBDIR}/{BFM_FILES[0]}",
    "bfm_landmarks": f"{BFM_SUBDIR}/{BFM_FILES[1]}",
    "bfm_std_exp": f"{BFM_SUBDIR}/std_exp.txt",
}
REQUIRED_ROLES = ("sgpn", "d3dfr")
BFM_MODEL_KEYS = {"meanshape", "idBase", "exBase", "meantex", "texBase", "tri", "point_buf", "keypoints"}
STD_EXP_VALUES = 79
MAX_NESTING = 3                           # archives inside archives


class BundleError(WeightsError):
    """A bundle that cannot be read or lacks what restoration needs."""


@dataclass(frozen=True)
class Member:
    """One file of a bundle: its path (relative name for display), what it is, and the role it can fill."""

    path: Path
    name: str
    what: str
    role: str | None = None
    safetensors: bool = False             # installed as ``<stem>.safetensors`` (files are read by suffix)

    @property
    def target(self) -> str:
        """Path relative to ``weights_dir()`` this member is installed at."""
        target = ROLE_TARGETS[self.role]
        return str(Path(target).with_suffix(".safetensors")) if self.safetensors else target


@dataclass
class BundleReport:
    """What an install did: ``installed`` role -> (path, sha256, member name); ``skipped`` members with reasons."""

    source: str
    installed: dict[str, tuple[Path, str, str]] = field(default_factory=dict)
    skipped: list[Member] = field(default_factory=list)
    bfm_installed: bool = False

    def summary(self) -> str:
        """The lines `sgpn weights download/import` prints."""
        lines = [f"installed from {self.source} into {weights_dir()}:"]
        for path, digest, member in self.installed.values():
            lines.append(f"  {path.relative_to(weights_dir())!s:34s} sha256 {digest}  (from {member})")
        for member in self.skipped:
            lines.append(f"  not used: {member.name}: {member.what}")
        if self.bfm_installed:
            lines.append(BFM_LICENCE)
        else:
            lines.append("no BFM folder in this bundle: give one with --bfm or SGPN_BFM_DIR to restore faces.")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------- recognition

def _head(path: Path, size: int = 512) -> bytes:
    with open(path, "rb") as fin:
        return fin.read(size)


def _is_torch_zip(path: Path) -> bool:
    """A checkpoint written by ``torch.save`` (a zip whose top folder holds ``data.pkl``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.count("/") == 1 and name.endswith("/data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _pickled_model_kind(path: Path) -> str | None:
    """Name a whole pickled model (not a state dict) from the modules its pickle refers to, without unpickling."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                data = b"".join(archive.read(n) for n in archive.namelist() if n.endswith("/data.pkl"))
        else:
            data = path.read_bytes()[:1 << 20]
    except (OSError, zipfile.BadZipFile):
        return None
    if b"models.yolo" in data or b"models.common" in data:
        return "a pickled YOLOv5(-face) detector model (SGPN's official detector; this project detects with facexlib)"
    return None


def _recognise_checkpoint(path: Path, name: str, safetensors: bool) -> Member:
    from .checkpoint_layouts import identify_layout
    from .checkpoints import CheckpointError, state_dict_keys

    try:
        keys = state_dict_keys(path)
    except CheckpointError as err:
        return Member(path, name, _pickled_model_kind(path) or f"a torch file that is not a readable state dict ({err})")
    layout = identify_layout(keys)
    if layout is None:
        return Member(path, name, f"a checkpoint of an unrecognised network (keys like {', '.join(keys[:3])})")
    return Member(path, name, f"a {layout.description} checkpoint", layout.sgpn_role, safetensors)


def _recognise_mat(path: Path, name: str) -> Member:
    from scipy.io import whosmat

    try:
        variables = {var for var, _, _ in whosmat(str(path))}
    except Exception as err:  # truncated or not really MATLAB
        return Member(path, name, f"an unreadable MATLAB file ({err})")
    if BFM_MODEL_KEYS <= variables:
        return Member(path, name, "the converted BFM09 face model (BFM09_model_info.mat layout)", "bfm_model_info")
    if variables == {"lm"}:
        return Member(path, name, "the 3D reference landmarks (similarity_Lm3D_all.mat layout)", "bfm_landmarks")
    return Member(path, name, f"a MATLAB file with variables {sorted(variables)[:6]}")


def _recognise_text(path: Path, name: str) -> Member:
    try:
        values = [float(v) for v in path.read_text(encoding="ascii").split()]
    except (UnicodeDecodeError, ValueError):
        return Member(path, name, "a file of unknown type")
    if len(values) == STD_EXP_VALUES:
        return Member(path, name, "the BFM expression standard deviations (std_exp.txt layout)", "bfm_std_exp")
    return Member(path, name, f"a text file of {len(values)} numbers")


def recognise(path: Path, name: str | None = None) -> Member:
    """What the file at ``path`` is, from its content."""
    from .checkpoints import is_safetensors_file   # torch is imported only when a bundle is opened

    name = name or path.name
    head = _head(path)
    if head.startswith(b"MATLAB 5.0 MAT-file"):
        return _recognise_mat(path, name)
    safetensors = is_safetensors_file(path)
    if safetensors or _is_torch_zip(path) or head.startswith(b"\x80"):
        return _recognise_checkpoint(path, name, safetensors)
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return Member(path, name, "an HTML page, not a file of the bundle (a Google Drive quota or sign-in page?)")
    if len(head) and path.stat().st_size < 64 * 1024:
        return _recognise_text(path, name)
    return Member(path, name, "a file of unknown type")


# ------------------------------------------------------------------------------------------------- unpacking

def _archive_kind(path: Path) -> str | None:
    """"zip" or "tar" for an archive (a torch checkpoint, itself a zip, is not one), else None."""
    if zipfile.is_zipfile(path) and not _is_torch_zip(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    return None


def _extract(archive: Path, kind: str, into: Path) -> None:
    into.mkdir(parents=True)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zfile:
                outside = [i.filename for i in zfile.infolist()
                           if not (into / i.filename).resolve().is_relative_to(into.resolve())]
                if not outside:
                    zfile.extractall(into)
        else:
            with tarfile.open(archive) as tfile:
                tfile.extractall(into, filter="data")   # refuses members outside ``into`` (tarfile.OutsideDestinationError)
                outside = []
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as err:
        raise BundleError(f"{archive} is a damaged {kind} archive ({type(err).__name__}: {err}). Download it again. "
                          f"{HOW_TO_GET_BUNDLE}") from None
    if outside:
        raise BundleError(f"{archive} has members outside its folder ({', '.join(outside[:3])}): refused, nothing "
                          f"installed. {HOW_TO_GET_BUNDLE}")


def _files_of(folder: Path) -> list[Path]:
    """Regular files under ``folder``, hidden files and folders (``__MACOSX``, ``._x``) left out."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
                  and not any(part.startswith((".", "__MACOSX")) for part in p.relative_to(folder).parts))


def collect_members(source: Path, scratch: Path) -> list[Member]:
    """Every file of the bundle at ``source`` (archive, folder or single file), archives unpacked into ``scratch``."""
    if not source.exists():
        raise BundleError(f"bundle {source} does not exist. {HOW_TO_GET_BUNDLE}")
    pending = [(source, source.name, 0)]
    members = []
    while pending:
        path, name, depth = pending.pop(0)
        if path.is_dir():
            pending.extend((f, f"{name}/{f.relative_to(path)}", depth) for f in _files_of(path))
            continue
        kind = _archive_kind(path)
        if kind is not None and depth < MAX_NESTING:
            into = scratch / f"unpacked{len(list(scratch.glob('unpacked*')))}"
            _extract(path, kind, into)
            pending.extend((f, f"{name}/{f.relative_to(into)}", depth + 1) for f in _files_of(into))
            continue
        if _damaged_zip(path):
            raise BundleError(f"{name} is a damaged zip archive or checkpoint (truncated download?). Download the "
                              f"bundle again. {HOW_TO_GET_BUNDLE}")
        members.append(recognise(path, name))
    return members


def _damaged_zip(path: Path) -> bool:
    """A file that starts like a zip but cannot be opened as one (a truncated download)."""
    return _head(path, 4) == b"PK\x03\x04" and not zipfile.is_zipfile(path)


def choose_members(members: list[Member]) -> tuple[dict[str, Member], list[Member]]:
    """One member per role (a tie between two of the same kind goes to the official file name); the rest."""
    by_role: dict[str, list[Member]] = {}
    for member in members:
        if member.role:
            by_role.setdefault(member.role, []).append(member)
    chosen, skipped = {}, [m for m in members if not m.role]
    for role, candidates in by_role.items():
        official = Path(ROLE_TARGETS[role]).name
        pick = next((m for m in candidates if m.path.name == official), None)
        if pick is None and len(candidates) > 1:
            names = ", ".join(m.name for m in candidates)
            raise BundleError(f"the bundle holds several files that could be {ROLE_TARGETS[role]} ({names}) and none "
                              f"has the official name {official}: give the one you want with its SGPN_WEIGHTS_* "
                              f"variable, or import a bundle with only one.")
        pick = pick or candidates[0]
        chosen[role] = pick
        skipped.extend(Member(m.path, m.name, f"{m.what}; {pick.name} is used instead") for m in candidates
                       if m is not pick)
    missing = [role for role in REQUIRED_ROLES if role not in chosen]
    if missing:
        wanted = " and ".join(MODEL_ZOO[role].description for role in missing)
        found = "; ".join(f"{m.name}: {m.what}" for m in members) or "no files"
        raise BundleError(f"this is not a complete SGPN release bundle: no {wanted} in it. Found: {found}. "
                          f"{HOW_TO_GET_BUNDLE}")
    if ("bfm_model_info" in chosen) != ("bfm_landmarks" in chosen):
        present, absent = (BFM_FILES[0], BFM_FILES[1]) if "bfm_model_info" in chosen else (BFM_FILES[1], BFM_FILES[0])
        raise BundleError(f"the bundle's BFM folder is incomplete: {present} without {absent}. {HOW_TO_GET_BUNDLE}")
    return chosen, skipped


# ------------------------------------------------------------------------------------------------- installing

def _stage(chosen: dict[str, Member], staging: Path, move: bool) -> dict[str, tuple[Path, str, str]]:
    """Copy (or move) the chosen members under their installed names into ``staging``; hash them."""
    staging.mkdir(parents=True, exist_ok=True)
    mode = _new_file_mode(staging)        # downloads and extractions may have left 0600 or the archive's bits
    staged = {}
    for role, member in chosen.items():
        target = staging / member.target
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.move if move else shutil.copyfile)(member.path, target)
        os.chmod(target, mode)
        staged[role] = (target, sha256sum(target), member.name)
    return staged


def _new_file_mode(folder: Path) -> int:
    """The mode the user's umask gives a new file, read off a probe file (changing the process-wide umask to read it
    would race with other threads creating files, e.g. the Gradio app's)."""
    probe = folder / ".mode-probe"
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        return stat.S_IMODE(probe.stat().st_mode)
    finally:
        probe.unlink()


def _publish(staged: dict[str, tuple[Path, str, str]], staging: Path, report: BundleReport) -> None:
    """Move staged files into ``weights_dir()`` (each rename atomic); the BFM folder replaces any older one."""
    root = weights_dir()
    for role, (path, digest, member) in staged.items():
        final = root / path.relative_to(staging)
        if path.parent == staging:
            for other in MODEL_ZOO[role].local_names:     # a .pth and an older .safetensors must not both remain
                if other != path.name:
                    (root / other).unlink(missing_ok=True)
            os.replace(path, final)
        report.installed[role] = (final, digest, member)
    if (staging / BFM_SUBDIR).is_dir():
        old = installed_bfm_folder()
        if old.exists():
            os.replace(old, staging / "previous_BFM")
        os.replace(staging / BFM_SUBDIR, old)
        report.bfm_installed = True


def _write_manifest(report: BundleReport) -> None:
    manifest = {"source": report.source, "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": {str(path.relative_to(weights_dir())): {"sha256": digest, "member": member}
                          for path, digest, member in report.installed.values()}}
    write_bytes_atomic(weights_dir() / MANIFEST, json.dumps(manifest, indent=1).encode())


def install_bundle(source: str | os.PathLike, *, consume: bool = False, origin: str | None = None) -> BundleReport:
    """Install the SGPN files found in the bundle at ``source`` into ``weights_dir()``.

    ``consume=True`` lets the install take the downloaded archive's unpacked files instead of copying them
    (the caller deletes the archive). Raises :class:`BundleError` (nothing installed) when the bundle is damaged
    or lacks the generator or the D3DFR.
    """
    source = Path(source).expanduser()
    root = weights_dir()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".install-", dir=root))
    try:
        members = collect_members(source, staging / "scratch")
        chosen, skipped = choose_members(members)
        unpacked = all(m.path.is_relative_to(staging) for m in chosen.values())
        staged = _stage(chosen, staging / "out", move=unpacked or consume)
        report = BundleReport(origin or str(source), skipped=skipped)
        _publish(staged, staging / "out", report)
        _write_manifest(report)
        logger.debug("installed the SGPN release bundle from %s into %s", report.source, root)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_bundle(url: str | None = None, timeout: float | tuple[float, float] | None = None,
                    quiet: bool = False) -> BundleReport:
    """Download the official release bundle (or ``url`` / ``$SGPN_BUNDLE_URL``) with gdown and install it.

    The download goes to ``weights_dir()/downloads/`` (gdown writes a ``.part`` file and resumes it after an
    interruption); the archive is deleted once installed, and a damaged one is deleted so the next try starts over.
    """
    import gdown
    import requests

    url = url or os.environ.get(BUNDLE_URL_ENV)
    target = weights_dir() / "downloads" / "sgpn_release_bundle"
    target.parent.mkdir(parents=True, exist_ok=True)
    where = url or OFFICIAL_BUNDLE_PAGE
    try:
        gdown.download(url=url, id=None if url else OFFICIAL_BUNDLE_ID, output=str(target), quiet=quiet,
                       resume=True, timeout=timeout or DEFAULT_TIMEOUT)
    except (requests.RequestException, OSError, gdown.exceptions.FileURLRetrievalError,
            gdown.exceptions.DownloadError) as err:
        with contextlib.suppress(OSError):   # empty: nothing to resume
            target.parent.rmdir()
        raise BundleError(f"cannot download the SGPN release bundle from {where}: {root_cause(err)}. "
                          f"{HOW_TO_GET_BUNDLE}") from None
    try:
        return install_bundle(target, consume=True, origin=where)
    finally:                      # installed, or damaged: either way the next try starts from scratch
        target.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            target.parent.rmdir()


def read_manifest() -> dict:
    """What the last bundle install recorded (``{}`` when none)."""
    try:
        return json.loads((weights_dir() / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
