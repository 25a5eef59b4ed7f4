"""Model zoo: where every weight file comes from, how it is verified, and where it is looked for.

Resolution order for a weight ``name``: an explicit path → the environment variable of that weight
(e.g. ``SGPN_WEIGHTS_SGPN``) → ``$SGPN_WEIGHTS_DIR/<filename>`` (default ``~/.cache/sgpn``) → a download
(Hugging Face Hub via ``huggingface_hub``, or a URL), verified by sha256 when the hash is known.
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

DEFAULT_HF_REPO = "sgpn-restore/sgpn-weights"
BFM_ENV = "SGPN_BFM_DIR"


class WeightsError(FileNotFoundError):
    """A weight file that cannot be found, downloaded or verified."""


@dataclass(frozen=True)
class WeightSpec:
    """One checkpoint of the zoo. ``sha256`` is ``None`` where the real hash is not known here."""

    name: str
    filename: str
    description: str
    sha256: str | None = None
    hf_filename: str | None = None        # file in the Hub repo (``SGPN_HF_REPO``); None: not on the Hub
    url: str | None = None

    @property
    def env_var(self) -> str:
        return "SGPN_WEIGHTS_" + self.name.upper().replace(".", "").replace("-", "_")


MODEL_ZOO: dict[str, WeightSpec] = {}


def register_weight(spec: WeightSpec) -> WeightSpec:
    """Add a checkpoint to the zoo (metric and peer networks register themselves here)."""
    MODEL_ZOO[spec.name] = spec
    return spec


for _spec in (
    WeightSpec("sgpn", "sgpn.pth", "SGPN generator (official release)", hf_filename="sgpn.pth"),
    WeightSpec("d3dfr", "d3dfr_finetune_ours.pth", "SGPN's fine-tuned D3DFR ResNet-50", hf_filename="d3dfr_finetune_ours.pth"),
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


def weights_dir() -> Path:
    """Folder where downloaded weights are cached (``SGPN_WEIGHTS_DIR``, default ``~/.cache/sgpn``)."""
    return Path(os.environ.get("SGPN_WEIGHTS_DIR", Path.home() / ".cache" / "sgpn")).expanduser()


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


def _download_hub(spec: WeightSpec) -> Path:
    from huggingface_hub import hf_hub_download

    repo = os.environ.get("SGPN_HF_REPO", DEFAULT_HF_REPO)
    return Path(hf_hub_download(repo_id=repo, filename=spec.hf_filename))


def _download_url(url: str, target: Path) -> Path:
    """Download to ``target.part`` (resumed if present), then rename atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        mode = "ab" if start and response.status == 206 else "wb"
        with open(part, mode) as fout:
            shutil.copyfileobj(response, fout)
    os.replace(part, target)
    return target


def resolve_weights(name: str, path: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """Local path of weight ``name``, downloading and verifying it if needed."""
    if name not in MODEL_ZOO:
        raise WeightsError(f"unknown weights {name!r}; known: {sorted(MODEL_ZOO)}")
    spec = MODEL_ZOO[name]
    looked = []
    for candidate, origin in ((path, "given path"), (os.environ.get(spec.env_var), spec.env_var)):
        if candidate:
            candidate = Path(candidate).expanduser()
            if not candidate.is_file():
                raise WeightsError(f"{spec.description}: {origin} {candidate} does not exist")
            return candidate
    cached = weights_dir() / spec.filename
    looked.append(str(cached))
    if cached.is_file():
        verify(spec, cached)
        return cached
    errors = []
    if allow_download and spec.hf_filename:
        try:
            downloaded = _download_hub(spec)
            verify(spec, downloaded)
            return downloaded
        except WeightsError:
            raise
        except Exception as err:  # offline, missing repo/file, HTTP errors
            errors.append(f"Hugging Face Hub {os.environ.get('SGPN_HF_REPO', DEFAULT_HF_REPO)}/{spec.hf_filename}: "
                          f"{type(err).__name__}")
    if allow_download and spec.url:
        try:
            downloaded = _download_url(spec.url, cached)
        except Exception as err:
            errors.append(f"{spec.url}: {type(err).__name__}: {err}")
        else:
            try:
                verify(spec, downloaded)
            except WeightsError:
                downloaded.unlink()
                raise
            return downloaded
    tried = "; ".join(errors) if errors else ("downloads disabled" if not allow_download else "no download source")
    raise WeightsError(f"{spec.description} ({spec.filename}) not found. Looked in: {', '.join(looked)}; "
                       f"download: {tried}. Provide it with the matching option, the {spec.env_var} environment "
                       f"variable, or by placing it in {weights_dir()} (SGPN_WEIGHTS_DIR).")


def resolve_bfm_folder(folder: str | os.PathLike | None = None) -> Path:
    """The user-supplied BFM folder (option or ``SGPN_BFM_DIR``); the BFM cannot be downloaded."""
    from .bfm import GET_BFM

    folder = folder or os.environ.get(BFM_ENV)
    if not folder:
        raise WeightsError(f"no BFM folder given. {GET_BFM}")
    return Path(folder).expanduser()


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
