"""Training/validation data: HQ faces (folder or LMDB) aligned to the template in use, LQ made on the fly."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import torch
from torch.utils import data

from . import compat  # noqa: F401  (before basicsr)
from basicsr.utils import FileClient, imfrombytes  # noqa: E402
from basicsr.utils.registry import DATASET_REGISTRY  # noqa: E402

from sgpn_arch.eval.degradation import BlindDegradation, to_gray  # noqa: E402
from sgpn_arch.face3d.bfm_synthetic import REFERENCE_LM3D_5  # noqa: E402
from sgpn_arch.pipeline.align import d3dfr_crop_matrix, get_template, similarity_transform  # noqa: E402

DEGRADATION_KEYS = {"blur_kernel_size", "blur_sigma", "anisotropic_prob", "downsample_range", "noise_range",
                    "jpeg_range", "color_jitter_prob", "color_jitter_shift", "gray_prob", "color_jitter_pt_prob",
                    "brightness", "contrast", "saturation", "hue"}
GFPGAN_KEYS = {"mean", "std", "kernel_list", "kernel_prob", "gt_gray"}   # GFPGAN's FFHQDegradationDataset names
DATASET_KEYS = {"name", "type", "phase", "scale", "dataroot_gt", "dataroot_lq", "io_backend", "landmarks_file", "template",
                "out_size", "use_hflip", "seed"} | DEGRADATION_KEYS | GFPGAN_KEYS
LOADER_KEYS = {"num_worker_per_gpu", "batch_size_per_gpu", "dataset_enlarge_ratio", "prefetch_mode", "use_shuffle",
               "pin_memory", "persistent_workers"}


def check_keys(opt: dict, allowed: set[str], where: str) -> None:
    """Fail at start-up, naming the key (and the closest known one), when an option is not known (typos)."""
    from .options_check import unknown_keys_message

    message = unknown_keys_message(opt, allowed, where)
    if message:
        raise KeyError(message)


def degradation_options(opt: dict) -> dict:
    """:class:`BlindDegradation` arguments from dataset options, GFPGAN's ``kernel_list``/``kernel_prob`` included."""
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in opt.items()
            if k in DEGRADATION_KEYS and v is not None}       # ~ (GFPGAN's "off"): the default
    if "kernel_list" in opt or "kernel_prob" in opt:
        kinds, probs = list(opt.get("kernel_list", [])), list(opt.get("kernel_prob", []))
        if len(kinds) != len(probs) or set(kinds) - {"iso", "aniso"} or "anisotropic_prob" in opt:
            raise ValueError(f"kernel_list {kinds} / kernel_prob {probs}: give equally long lists over 'iso' and "
                             "'aniso' (the only blur kernels here), or anisotropic_prob instead, not both")
        total = sum(probs)
        args["anisotropic_prob"] = sum(p for k, p in zip(kinds, probs) if k == "aniso") / total if total else 0.0
    return args


def check_normalisation(opt: dict, where: str) -> None:
    """GFPGAN's ``mean``/``std``: SGPN's networks take images in [-1, 1], i.e. mean = std = 0.5 per channel."""
    for key in ("mean", "std"):
        if key in opt and [float(v) for v in opt[key]] != [0.5, 0.5, 0.5]:
            raise ValueError(f"{where}.{key} is {opt[key]}: SGPN's networks take images in [-1, 1], "
                             f"so {key} must be [0.5, 0.5, 0.5] (or left out)")


@DATASET_REGISTRY.register()
class SGPNFaceDataset(data.Dataset):
    """HQ faces → (lq, gt) in [-1, 1] ``[3,S,S]`` RGB, the 5 landmarks ``[5,2]`` and the 224-crop matrix.

    Faces are re-aligned to ``template`` when ``landmarks_file`` (JSON ``{file name: [[x, y] × 5]}``)
    is given, else they are taken as already aligned to it. Validation (``phase: val``) degrades each
    image with a fixed per-index seed, so the validation set is the same at every evaluation. With
    ``dataroot_lq`` (disk only: a folder of LQ faces with the GT file names, e.g. CelebA-Test) the
    LQ images are read from there instead of being synthesised.
    """

    def __init__(self, opt: dict):
        super().__init__()
        where = f"datasets.{opt.get('phase', '?')}"
        check_keys(opt, DATASET_KEYS | LOADER_KEYS, where)
        check_normalisation(opt, where)
        self.opt = opt
        self.out_size = int(opt.get("out_size", 512))
        self.template = get_template(opt.get("template", "sgpn"), self.out_size)
        self.degrade = BlindDegradation(**degradation_options(opt))
        self.io_opt = dict(opt.get("io_backend", {"type": "disk"}))
        self.file_client = None
        root = opt.get("dataroot_gt") or opt.get("dataroot_lq")
        if not root:
            raise KeyError(f"{where} needs dataroot_gt (HQ faces) or, for an LQ-only test set, dataroot_lq")
        if self.io_opt["type"] != "lmdb" and not os.path.isdir(root):
            key = "dataroot_gt" if opt.get("dataroot_gt") else "dataroot_lq"
            raise FileNotFoundError(f"{where}.{key} {root} is not a folder: point it at the face images")
        self.lq_only = not opt.get("dataroot_gt")
        if self.io_opt["type"] == "lmdb":
            self.io_opt.update(db_paths=[root], client_keys=["gt"])
            with open(os.path.join(root, "meta_info.txt")) as fin:
                self.keys = [line.split(".")[0] for line in fin if line.strip()]
        else:
            exts = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
            self.keys = sorted(os.path.join(root, f) for f in os.listdir(root) if f.lower().endswith(exts))
        if not self.keys:
            raise FileNotFoundError(f"no images found in dataroot_gt {root}")
        self.landmarks = None
        if opt.get("landmarks_file"):
            with open(opt["landmarks_file"]) as fin:
                self.landmarks = {os.path.basename(k): np.asarray(v, np.float32) for k, v in json.load(fin).items()}
        self._rng, self._rng_worker_seed = None, None
        self.crop_matrix = d3dfr_crop_matrix(torch.from_numpy(self.template)[None],
                                             torch.from_numpy(REFERENCE_LM3D_5), self.out_size)[0]

    def __len__(self) -> int:
        return len(self.keys)

    def _train_rng(self) -> np.random.Generator:
        """The training degradation's generator: one per data-loader worker and epoch.

        Inside a worker it is seeded from the worker's torch seed (``base_seed + worker_id``; the base seed
        is drawn anew for each epoch from the main process's seeded torch generator) combined with the
        dataset ``seed``; without workers one generator runs through all epochs.
        """
        info = data.get_worker_info()
        worker_seed = info.seed if info is not None else None
        if self._rng is None or worker_seed != self._rng_worker_seed:
            entropy = [s for s in (self.opt.get("seed"), worker_seed) if s is not None]
            self._rng = np.random.default_rng(np.random.SeedSequence(entropy or None))
            self._rng_worker_seed = worker_seed
        return self._rng

    def _load_aligned(self, index: int) -> np.ndarray:
        """The image of ``keys[index]`` (GT, or LQ of an LQ-only set), aligned to the template at ``out_size``."""
        if self.file_client is None:
            backend = {k: v for k, v in self.io_opt.items() if k != "type"}
            self.file_client = FileClient(self.io_opt["type"], **backend)
        key = self.keys[index]
        img = imfrombytes(self.file_client.get(key, "gt"), float32=True)
        name = os.path.basename(key)
        if self.landmarks is not None and name in self.landmarks:
            matrix = similarity_transform(self.landmarks[name], self.template)
            return cv2.warpAffine(img, matrix, (self.out_size, self.out_size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)
        if img.shape[:2] != (self.out_size, self.out_size):
            interp = cv2.INTER_AREA if img.shape[0] > self.out_size else cv2.INTER_LINEAR
            img = cv2.resize(img, (self.out_size, self.out_size), interpolation=interp)
        return img

    def _load_lq(self, index: int, gt: np.ndarray) -> np.ndarray:
        path = os.path.join(self.opt["dataroot_lq"], os.path.basename(self.keys[index]))
        lq = cv2.imread(path, cv2.IMREAD_COLOR)
        if lq is None:
            raise FileNotFoundError(f"LQ image {path} is missing or unreadable (dataroot_lq must hold the GT file names)")
        lq = lq.astype(np.float32) / 255.0
        if lq.shape[:2] != gt.shape[:2]:
            lq = cv2.resize(lq, gt.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        return lq

    def __getitem__(self, index: int) -> dict:
        to_tensor = lambda im: torch.from_numpy(np.clip(im, 0, 1)[..., ::-1].copy()).permute(2, 0, 1) * 2 - 1  # noqa: E731
        item = {"landmarks": torch.from_numpy(self.template), "crop_matrix": self.crop_matrix,
                "lq_path": str(self.keys[index])}
        if self.lq_only:            # LQ-only test set: no GT, no-reference metrics only
            return dict(item, lq=to_tensor(self._load_aligned(index)))
        gt = self._load_aligned(index)
        val = self.opt.get("phase") != "train"
        rng = np.random.default_rng(index) if val else self._train_rng()
        if not val and self.opt.get("use_hflip", True) and rng.random() < 0.5:
            gt = gt[:, ::-1].copy()     # the template is left-right symmetric up to a pixel
        if self.opt.get("dataroot_lq"):
            lq, grey = self._load_lq(index, gt), False
        else:
            lq, grey = self.degrade.sample(gt, rng)
        if grey and self.opt.get("gt_gray"):
            gt = to_gray(gt)          # GFPGAN's gt_gray: a grey LQ gets a grey target
        return dict(item, lq=to_tensor(lq), gt=to_tensor(gt), gt_path=str(self.keys[index]))
