"""Model zoo: where every weight file comes from, how it is verified, and where it is looked for.

Resolution order for a weight ``name`` (:func:`locate_weights`, then :func:`resolve_weights`):

1. an explicit path, then the weight's environment variable (e.g. ``SGPN_WEIGHTS_SGPN``);
2. ``$SGPN_WEIGHTS_DIR/<filename>`` (default ``~/.cache/sgpn``) — where ``sgpn weights download`` and
   ``sgpn weights import`` install the official release bundle (:mod:`sgpn_arch.zoo.bundle`);
3. the Hugging Face cache of a mirror repository, only when ``SGPN_HF_REPO`` names one (no default: nobody
   publishes an official Hub repository), served without network access;
4. a download: the SGPN files come with the official release bundle (Google Drive), or from the
   ``SGPN_HF_REPO`` mirror when set; the other files from their release URLs. Verified by sha256 where known.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

HF_REPO_ENV = "SGPN_HF_REPO"
BFM_ENV = "SGPN_BFM_DIR"
BFM_SUBDIR = "BFM"                       # inside weights_dir(): the BFM folder of an installed bundle
BFM_FILES = ("BFM09_model_info.mat", "similarity_Lm3D_all.mat")
DEFAULT_TIMEOUT = (5.0, 60.0)            # (connect, read) seconds of every download


class WeightsError(FileNotFoundError):
    """A weight file that cannot be found, downloaded or verified."""


@dataclass(frozen=True)
class WeightSpec:
    """One checkpoint of the zoo. ``sha256`` is ``None`` where the real hash is not known here."""

    name: str
    filename: str
    description: str
    sha256: str | None = None
    hf_filename: str | None = None        # file in a ``SGPN_HF_REPO`` mirror; None: never looked for there
    url: str | None = None
    in_bundle: bool = False               # part of the official SGPN release bundle (sgpn_arch.zoo.bundle)

    @property
    def env_var(self) -> str:
        return "SGPN_WEIGHTS_" + self.name.upper().replace(".", "").replace("-", "_")

    @property
    def local_names(self) -> tuple[str, ...]:
        """File names this weight may have in ``weights_dir()`` (a ``.safetensors`` copy is accepted too)."""
        return (self.filename, Path(self.filename).stem + ".safetensors")


@dataclass(frozen=True)
class Located:
    """Where a weight file was found: ``path`` and ``origin`` (how it was found, for people)."""

    path: Path
    origin: str


MODEL_ZOO: dict[str, WeightSpec] = {}


def register_weight(spec: WeightSpec) -> WeightSpec:
    """Add a checkpoint to the zoo (metric and peer networks register themselves here)."""
    MODEL_ZOO[spec.name] = spec
    return spec


for _spec in (
    WeightSpec("sgpn", "sgpn.pth", "SGPN generator (official release)", hf_filename="sgpn.safetensors",
               in_bundle=True),
    WeightSpec("d3dfr", "d3dfr_finetune_ours.pth", "SGPN's fine-tuned D3DFR ResNet-50",
               hf_filename="d3dfr_finetune_ours.safetensors", in_bundle=True),
    WeightSpec("retinaface_resnet50", "detection_Resnet50_Final.pth", "facexlib RetinaFace ResNet-50 detector",
               sha256="6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
               url="https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth"),
    WeightSpec("retinaface_mobile0.25", "detection_mobilenet0.25_Final.pth", "facexlib RetinaFace MobileNet-0.25 detector",
               url="https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth"),
    WeightSpec("parsenet", "parsing_parsenet.pth", "facexlib ParseNet face parsing (paste-back mask)",
               url="https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth"),
    WeightSpec("arcface", "arcface_resnet18.pth", "ArcFace ResNet-18 (identity loss, Deg metric)",
               url="https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/arcface_resnet18.pth"),
    WeightSpec("vgg19", "vgg19-dcbb9e9d.pth", "ImageNet VGG-19 (torchvision; perceptual loss)",
               url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"),
):
    register_weight(_spec)

RESTORE_WEIGHTS = ("sgpn", "d3dfr", "retinaface_resnet50")   # what `sgpn restore` needs with its defaults


def weights_dir() -> Path:
    """Folder where downloaded weights are cached (``SGPN_WEIGHTS_DIR``, default ``~/.cache/sgpn``)."""
    return Path(os.environ.get("SGPN_WEIGHTS_DIR", Path.home() / ".cache" / "sgpn")).expanduser()


def hf_repo() -> str | None:
    """The Hugging Face mirror repository named by ``SGPN_HF_REPO``, or None (there is no default)."""
    return os.environ.get(HF_REPO_ENV) or None


def sha256sum(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fin:
        for block in iter(lambda: fin.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(spec: WeightSpec, path: Path) -> None:
    """Raise :class:`WeightsError` when ``path`` does not have the expected sha256."""
    if spec.sha256 is None:
        logger.debug("no sha256 known for %s; not verified", spec.name)
        return
    actual = sha256sum(path)
    if actual != spec.sha256:
        raise WeightsError(f"{path} is not the expected {spec.description} ({spec.filename}): sha256 {actual}, "
                           f"expected {spec.sha256}. Delete it and download it again.")


def _download_hub(spec: WeightSpec, local_only: bool = False, timeout: float | None = None) -> Path:
    """``spec.hf_filename`` of the ``SGPN_HF_REPO`` mirror through the Hugging Face cache."""
    from huggingface_hub import hf_hub_download

    if not local_only:
        _check_hub_reachable(timeout or DEFAULT_TIMEOUT[0])
    kwargs = {"etag_timeout": timeout} if timeout else {}
    return Path(hf_hub_download(repo_id=hf_repo(), filename=spec.hf_filename, local_files_only=local_only, **kwargs))


def _check_hub_reachable(timeout: float) -> None:
    """One TCP connection to the Hub endpoint first: huggingface_hub retries a refused or silent host for ~25 s."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return                                  # huggingface_hub answers from its cache without connecting
    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    with socket.create_connection((endpoint.hostname, port), timeout=timeout):
        pass


def _download_url(url: str, target: Path, timeout: float | tuple[float, float] | None = None) -> Path:
    """Download to ``target.part`` (resumed if present), then rename atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    seconds = timeout if isinstance(timeout, (int, float)) else (timeout or DEFAULT_TIMEOUT)[-1]
    with urllib.request.urlopen(request, timeout=seconds) as response:
        mode = "ab" if start and response.status == 206 else "wb"
        with open(part, mode) as fout:
            shutil.copyfileobj(response, fout)
    os.replace(part, target)
    return target


def root_cause(err: BaseException) -> str:
    """The innermost reason of a network error (requests wraps urllib3 wraps socket errors; huggingface_hub
    raises from them), on one line."""
    for _ in range(8):
        inner = getattr(err, "reason", None)
        if not isinstance(inner, BaseException):
            inner = err.args[0] if err.args and isinstance(err.args[0], BaseException) else err.__cause__
        if not isinstance(inner, BaseException) or inner is err:
            break
        err = inner
    text = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {text[:240]}" if text else type(err).__name__


def _hub_cached(spec: WeightSpec) -> Path | None:
    """The mirror's file from the local Hugging Face cache (no network), or None."""
    if not (hf_repo() and spec.hf_filename):
        return None
    try:
        return _download_hub(spec, local_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError), huggingface_hub missing, bad repo id
        return None


def locate_weights(name: str, path: str | os.PathLike | None = None) -> Located | None:
    """Where weight ``name`` is on this machine (steps 1-3 of the module docstring), or None; never downloads.

    An explicit path or environment variable that points nowhere raises :class:`WeightsError`; a cached file
    with a known sha256 that does not match raises too.
    """
    if name not in MODEL_ZOO:
        raise WeightsError(f"unknown weights {name!r}; known: {sorted(MODEL_ZOO)}")
    spec = MODEL_ZOO[name]
    for candidate, origin in ((path, "given path"), (os.environ.get(spec.env_var), spec.env_var)):
        if candidate:
            candidate = Path(candidate).expanduser()
            if not candidate.is_file():
                raise WeightsError(f"{spec.description}: {origin} {candidate} does not exist")
            return Located(candidate, origin)
    for local_name in spec.local_names:
        cached = weights_dir() / local_name
        if cached.is_file():
            if local_name == spec.filename:
                verify(spec, cached)
            return Located(cached, "SGPN_WEIGHTS_DIR")
    hub = _hub_cached(spec)
    if hub is not None:
        verify(spec, hub)
        return Located(hub, f"Hugging Face cache of {hf_repo()}")
    return None


def _download(spec: WeightSpec, timeout) -> tuple[Path | None, list[str]]:
    """Try the download sources of ``spec``; returns the file (or None) and what went wrong per source."""
    errors = []
    if hf_repo() and spec.hf_filename:
        try:
            downloaded = _download_hub(spec, timeout=timeout if isinstance(timeout, (int, float)) else None)
        except Exception as err:  # offline, missing repo/file, HTTP errors
            errors.append(f"Hugging Face Hub {hf_repo()}/{spec.hf_filename}: {root_cause(err)}")
        else:
            verify(spec, downloaded)
            return downloaded, errors
    if spec.in_bundle:
        from .bundle import download_bundle

        try:
            download_bundle(timeout=timeout)
        except WeightsError as err:
            errors.append(str(err))
        else:
            found = locate_weights(spec.name)
            if found is not None:
                return found.path, errors
            errors.append(f"the release bundle held no {spec.description}")
    if spec.url:
        cached = weights_dir() / spec.filename
        try:
            downloaded = _download_url(spec.url, cached, timeout)
        except Exception as err:
            errors.append(f"{spec.url}: {type(err).__name__}: {err}")
        else:
            try:
                verify(spec, downloaded)
            except WeightsError:
                downloaded.unlink()
                raise
            return downloaded, errors
    return None, errors


def resolve_weights(name: str, path: str | os.PathLike | None = None, allow_download: bool = True,
                    timeout: float | tuple[float, float] | None = None) -> Path:
    """Local path of weight ``name``, downloading and verifying it if needed.

    ``timeout`` bounds each network wait (seconds, or ``(connect, read)``; default ``DEFAULT_TIMEOUT``).
    """
    found = locate_weights(name, path)
    if found is not None:
        return found.path
    spec = MODEL_ZOO[name]
    looked = [str(weights_dir() / spec.filename)] + ([f"Hugging Face cache of {hf_repo()}"] if hf_repo() else [])
    if allow_download:
        downloaded, errors = _download(spec, timeout)
        if downloaded is not None:
            return downloaded
        tried = "; ".join(errors) if errors else "no download source"
    else:
        tried = "downloads disabled"
    provide = (f"provide it with the matching option, the {spec.env_var} environment variable, or by placing it "
               f"in {weights_dir()} (SGPN_WEIGHTS_DIR).")
    how = "P" + provide[1:]
    if spec.in_bundle:
        from .bundle import HOW_TO_GET_BUNDLE

        how = ("" if HOW_TO_GET_BUNDLE in tried else HOW_TO_GET_BUNDLE + " ") + "Or " + provide
    raise WeightsError(f"{spec.description} ({spec.filename}) not found. Looked in: {', '.join(looked)}; "
                       f"download: {tried.rstrip('.')}. {how}")


def installed_bfm_folder() -> Path:
    """Where ``sgpn weights download``/``import`` installs the BFM of the release bundle."""
    return weights_dir() / BFM_SUBDIR


def locate_bfm_folder(folder: str | os.PathLike | None = None) -> Located | None:
    """The BFM folder from the option, ``SGPN_BFM_DIR`` or an installed bundle, or None; never downloads."""
    for candidate, origin in ((folder, "given path"), (os.environ.get(BFM_ENV), BFM_ENV)):
        if candidate:
            return Located(Path(candidate).expanduser(), origin)
    installed = installed_bfm_folder()
    if all((installed / name).is_file() for name in BFM_FILES):
        return Located(installed, "SGPN_WEIGHTS_DIR (release bundle)")
    return None


def resolve_bfm_folder(folder: str | os.PathLike | None = None, allow_download: bool = False,
                       timeout: float | tuple[float, float] | None = None) -> Path:
    """The BFM folder: option → ``SGPN_BFM_DIR`` → the bundle's ``BFM/`` in ``weights_dir()`` → (if allowed)
    a download of the release bundle. The files in it are checked when the 3DMM loads."""
    from ..face3d.bfm import GET_BFM

    found = locate_bfm_folder(folder)
    if found is None and allow_download:
        from .bundle import download_bundle

        download_bundle(timeout=timeout)
        found = locate_bfm_folder()
    if found is None:
        raise WeightsError(f"no BFM folder given and none installed in {installed_bfm_folder()}. {GET_BFM}")
    return found.path


def stage_for_facexlib(name: str, folder: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """A folder holding weight ``name`` under its facexlib file name (facexlib's ``model_rootpath``).

    facexlib downloads whatever it does not find there; resolving first means it never does.
    """
    source = resolve_weights(name, Path(folder) / MODEL_ZOO[name].filename if folder and
                             (Path(folder) / MODEL_ZOO[name].filename).is_file() else None, allow_download)
    root = source.parent if source.name == MODEL_ZOO[name].filename else Path(tempfile.mkdtemp(prefix="sgpn_facexlib_"))
    if root != source.parent:
        os.symlink(source, root / MODEL_ZOO[name].filename)
    return root
