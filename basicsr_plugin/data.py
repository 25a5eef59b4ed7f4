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

from sgpn_arch.align import d3dfr_crop_matrix, get_template, similarity_transform  # noqa: E402
from sgpn_arch.bfm_synthetic import REFERENCE_LM3D_5  # noqa: E402
from sgpn_arch.degradation import BlindDegradation  # noqa: E402

DEGRADATION_KEYS = {"blur_kernel_size", "blur_sigma", "anisotropic_prob", "downsample_range", "noise_range",
                    "jpeg_range", "color_jitter_prob", "color_jitter_shift", "gray_prob"}
DATASET_KEYS = {"name", "type", "phase", "scale", "dataroot_gt", "dataroot_lq", "io_backend", "landmarks_file", "template",
                "out_size", "use_hflip", "seed"} | DEGRADATION_KEYS
LOADER_KEYS = {"num_worker_per_gpu", "batch_size_per_gpu", "dataset_enlarge_ratio", "prefetch_mode", "use_shuffle",
               "pin_memory", "persistent_workers"}


def check_keys(opt: dict, allowed: set[str], where: str) -> None:
    """Fail at start-up, naming the key, when an option is not known (typos)."""
    unknown = sorted(set(opt) - allowed)
    if unknown:
        raise KeyError(f"unknown option(s) {unknown} in {where}; known options: {sorted(allowed)}")


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
        check_keys(opt, DATASET_KEYS | LOADER_KEYS, f"datasets.{opt.get('phase', '?')}")
        self.opt = opt
        self.out_size = int(opt.get("out_size", 512))
        self.template = get_template(opt.get("template", "sgpn"), self.out_size)
        self.degrade = BlindDegradation(**{k: tuple(v) if isinstance(v, list) else v
                                           for k, v in opt.items() if k in DEGRADATION_KEYS})
        self.io_opt = dict(opt.get("io_backend", {"type": "disk"}))
        self.file_client = None
        root = opt["dataroot_gt"]
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
        self.rng = np.random.default_rng(opt.get("seed"))
        self.crop_matrix = d3dfr_crop_matrix(torch.from_numpy(self.template)[None],
                                             torch.from_numpy(REFERENCE_LM3D_5), self.out_size)[0]

    def __len__(self) -> int:
        return len(self.keys)

    def _load_gt(self, index: int) -> np.ndarray:
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
        gt = self._load_gt(index)
        val = self.opt.get("phase") != "train"
        rng = np.random.default_rng(index) if val else self.rng
        if not val and self.opt.get("use_hflip", True) and rng.random() < 0.5:
            gt = gt[:, ::-1].copy()     # the template is left-right symmetric up to a pixel
        lq = self._load_lq(index, gt) if self.opt.get("dataroot_lq") else self.degrade(gt, rng)
        to_tensor = lambda im: torch.from_numpy(im[..., ::-1].copy()).permute(2, 0, 1) * 2 - 1  # noqa: E731
        return {"lq": to_tensor(lq), "gt": to_tensor(np.clip(gt, 0, 1)),
                "landmarks": torch.from_numpy(self.template), "crop_matrix": self.crop_matrix,
                "gt_path": str(self.keys[index]), "lq_path": str(self.keys[index])}
