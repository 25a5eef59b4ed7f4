"""SGPNModel: BasicSR training/validation of the SGPN generator with its shape prior (SPEC §6)."""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from contextlib import contextmanager
from copy import deepcopy

import torch
from torch.nn.parallel import DataParallel
from tqdm import tqdm

from . import compat  # noqa: F401  (before basicsr)
from basicsr.archs import build_network  # noqa: E402
from basicsr.losses import build_loss  # noqa: E402
from basicsr.losses.gan_loss import r1_penalty  # noqa: E402
from basicsr.models.sr_model import SRModel  # noqa: E402
from basicsr.utils import imwrite, tensor2img  # noqa: E402
from basicsr.utils.dist_util import master_only  # noqa: E402
from basicsr.utils.registry import MODEL_REGISTRY  # noqa: E402

from sgpn_arch.face3d.bfm import ParametricFaceModel  # noqa: E402
from sgpn_arch.face3d.bfm_synthetic import write_synthetic_bfm  # noqa: E402
from sgpn_arch.face3d.renderer import MeshRenderer  # noqa: E402
from sgpn_arch.face3d.shape_prior import ShapePrior  # noqa: E402
from sgpn_arch.nets.decoder_init import load_pretrained_decoder  # noqa: E402
from sgpn_arch.pipeline.align import get_template  # noqa: E402
from sgpn_arch.pipeline.image_io import atomic_output  # noqa: E402

from . import distributed  # noqa: E402
from .metrics import ValidationMetrics  # noqa: E402
from .options_check import check_options  # noqa: E402
from .pretrained import load_pretrained  # noqa: E402

logger = logging.getLogger("basicsr")

LOSS_KEYS = ("pixel_opt", "perceptual_opt", "gan_opt", "identity_opt", "coeff_opt", "landmark_opt", "photometric_opt")
TRAIN_KEYS = set(LOSS_KEYS) | {"optim_g", "optim_d", "optim_d3dfr", "scheduler", "total_iter", "warmup_iter",
                               "ema_decay", "r1_reg_weight", "net_d_iters", "net_d_init_iters", "net_d_reg_every",
                               "fix_d3dfr", "lazy_r1_correction"}
SHAPE_PRIOR_KEYS = {"bfm_folder", "renderer_backend", "template"}


def prune_checkpoints(models_dir: str, states_dir: str, keep: int | None) -> list[str]:
    """``logger.keep_checkpoints``: keep the ``keep`` newest iterations of ``net_*_<iter>.pth`` and
    ``<iter>.state`` (``*_latest.pth`` always stays; ``~`` or 0 keeps everything). Returns the removed files."""
    if not keep:
        return []
    files: dict[int, list[str]] = {}
    for folder, pattern in ((models_dir, re.compile(r"^net_\w+?_(\d+)\.pth$")), (states_dir, re.compile(r"^(\d+)\.state$"))):
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            match = pattern.match(name)
            if match:
                files.setdefault(int(match.group(1)), []).append(os.path.join(folder, name))
    removed = [path for it in sorted(files)[:-keep] for path in files[it]]
    for path in removed:
        os.remove(path)
    return removed


def _weight(loss_opt: dict | None) -> float:
    return float(loss_opt.get("loss_weight", 0.0)) if loss_opt else 0.0


def _save_atomic(obj, path: str) -> None:
    """``torch.save`` through a temporary file renamed onto ``path``: a kill leaves the previous file whole."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


@contextmanager
def _eval_mode(*modules: torch.nn.Module):
    """Every submodule in eval mode inside the block; each one's own mode restored after."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@MODEL_REGISTRY.register()
class SGPNModel(SRModel):
    """Generator + shape prior (D3DFR + BFM09 + renderer) [+ discriminator], with EMA.

    Every loss in ``train`` has a ``loss_weight``; 0 (or leaving the loss out) builds nothing for it.

    Distributed (``--launcher pytorch``/``slurm``): every rank starts from rank 0's weights; the networks
    that train (generator, discriminator, D3DFR when ``fix_d3dfr: false``) are wrapped in DDP, D3DFR alone
    so that the BFM (``shape_prior.face_model``, ~100 MB of constants) and the renderer stay outside every
    wrapper; the EMA copy is never wrapped (DDP or DataParallel). ``find_unused_parameters`` stays false:
    each backward reaches every trainable parameter of the networks it runs through (the R1 term adds
    ``0·D(x)`` for the last bias). Validation, EMA and checkpoints use the bare modules, so rank 0
    validates alone without starting collectives. D3DFR is kept in eval mode even when fine-tuned: its
    BatchNorm running statistics stay those of the pretrained model on every rank (small per-GPU batches
    would make them noisy, and unsynchronised they would drift apart between ranks).
    """

    def __init__(self, opt: dict):
        super(SRModel, self).__init__(opt)   # BaseModel: SRModel's own __init__ builds a different network set
        self.use_gan, self.fix_d3dfr = False, True
        prior_opt = opt.get("shape_prior", {})
        check_options(opt)
        if opt["dist"]:
            logger.info("distributed: %d processes, %s backend", opt["world_size"], torch.distributed.get_backend())
        decoder_path = opt["network_g"].pop("decoder_load_path", None)   # (not an SGPNGenerator argument)
        self.net_g = self.model_to_device(build_network(opt["network_g"]))
        self._load(self.net_g, "network_g", "params")
        self._init_decoder(decoder_path)
        d3dfr = self.model_to_device(build_network(opt["network_d3dfr"]), trainable=False)  # wrapped if fine-tuned
        self._load(d3dfr, "network_d3dfr", "params")
        prior = ShapePrior(d3dfr, ParametricFaceModel.from_folder(self._bfm_folder(prior_opt)),
                           MeshRenderer(backend=prior_opt.get("renderer_backend", "torch")))
        self.shape_prior = prior.to(self.device).eval()    # bare: validation, the HQ targets, checkpoints
        self.train_prior = self.shape_prior                # the same with D3DFR's DDP wrapper when fine-tuned
        if self.is_train:
            self.init_training_settings()

    def _bfm_folder(self, prior_opt: dict) -> str:
        """``shape_prior.bfm_folder``; ``synthetic`` writes a small synthetic BFM (smoke runs, not real training)."""
        if "bfm_folder" not in prior_opt:
            raise KeyError("shape_prior.bfm_folder is required: the folder holding BFM09_model_info.mat "
                           "and similarity_Lm3D_all.mat (or 'synthetic' for a smoke run)")
        if prior_opt["bfm_folder"] != "synthetic":
            return prior_opt["bfm_folder"]
        logger.warning("shape_prior.bfm_folder is 'synthetic': a random 3D face model, for smoke runs only")
        root = self.opt["path"].get("experiments_root") or self.opt["path"].get("results_root") or "."
        folder = os.path.join(root, "synthetic_bfm")
        if self.opt.get("rank", 0) == 0:
            write_synthetic_bfm(folder)
        distributed.barrier()          # the other ranks read it once rank 0 has written it
        return folder

    def model_to_device(self, net: torch.nn.Module, trainable: bool = True) -> torch.nn.Module:
        """To the device with rank 0's weights; a network that trains is wrapped in DDP (or DataParallel)."""
        net = net.to(self.device)
        distributed.broadcast_state(net)
        if not (trainable and self.is_train):
            return net
        if self.opt["dist"]:
            return distributed.wrap_ddp(net, self.opt.get("find_unused_parameters", False))
        return DataParallel(net) if self.opt["num_gpu"] > 1 else net

    def _load(self, net, network_key: str, default_param_key: str, ema: bool = False) -> None:
        """Load ``path.pretrain_<network_key>``: official plain files, BasicSR ``params``/``params_ema``
        (``param_key_<name>``, default ``default_param_key``, is the preferred one, ``params_ema`` for the EMA
        copy; the other key or a plain state dict is used when the file lacks it)."""
        name = network_key.removeprefix("network_")
        path = self.opt["path"].get(f"pretrain_{network_key}")
        if not path:
            return
        strict = self.opt["path"].get(f"strict_load_{name}", True)
        param_key = "params_ema" if ema else self.opt["path"].get(f"param_key_{name}", default_param_key)
        load_pretrained(self.get_bare_model(net), os.path.expanduser(path), param_key, strict)

    def _d3dfr_trains_or_random(self) -> bool:
        """Whether checkpoints hold the D3DFR: it trains, or it is a random one no file but this run's own
        checkpoints (which a resumed run loads from ``models/``) can give back."""
        path = self.opt["path"].get("pretrain_network_d3dfr")
        own = bool(path) and os.path.dirname(os.path.abspath(path)) == os.path.abspath(self.opt["path"].get("models", ""))
        return not self.fix_d3dfr or not path or own

    def _check_frozen_d3dfr_resumes(self) -> None:
        """A frozen pretrained D3DFR is not saved, so resuming must reload it from its pretrain file."""
        if self._d3dfr_trains_or_random() or "network_d3dfr" in (self.opt["path"].get("ignore_resume_networks") or []):
            return
        raise ValueError("train.fix_d3dfr is true, so checkpoints do not hold the (unchanged) D3DFR: add "
                         "'ignore_resume_networks: [network_d3dfr]' to the path options, so that --auto_resume "
                         "reloads path.pretrain_network_d3dfr instead of looking for models/net_d3dfr_<iter>.pth")

    def _init_decoder(self, path: str | None) -> None:
        """``network_g.decoder_load_path`` (GFPGAN's option): start netG's decoder from a pretrained StyleGAN2/GPEN
        generator (:mod:`sgpn_arch.nets.decoder_init`); skipped when ``pretrain_network_g`` is given or a run
        resumes."""
        if not path:
            return
        if self.opt["path"].get("pretrain_network_g"):
            logger.info("network_g.decoder_load_path ignored: the generator comes from %s",
                        self.opt["path"]["pretrain_network_g"])
            return
        report = load_pretrained_decoder(self.get_bare_model(self.net_g), os.path.expanduser(path))
        logger.info("Decoder of network_g initialised from %s (%s layout, %d tensors)", path, report.layout,
                    len(report.copied))

    # --- training set-up -------------------------------------------------------------------

    def init_training_settings(self):
        train_opt = self.opt["train"]
        self.net_g.train()
        self.fix_d3dfr = train_opt.get("fix_d3dfr", True)
        self._check_frozen_d3dfr_resumes()
        self.shape_prior.requires_grad_(not self.fix_d3dfr)   # stays in eval mode: BatchNorm frozen (class doc)
        if not self.fix_d3dfr:
            self.train_prior = ShapePrior(self.model_to_device(self.shape_prior.d3dfr), self.shape_prior.face_model,
                                          self.shape_prior.renderer)
        self.ema_decay = train_opt.get("ema_decay", 0)
        if self.ema_decay > 0:
            self.net_g_ema = self.model_to_device(build_network(self.opt["network_g"]), trainable=False)
            if self.opt["path"].get("pretrain_network_g"):
                self._load(self.net_g_ema, "network_g", "params", ema=True)   # plain files: the same weights
            else:
                self.model_ema(0)
            self.net_g_ema.eval()

        weights = {key: _weight(train_opt.get(key)) for key in LOSS_KEYS}
        self.cri = {key: build_loss(train_opt[key]).to(self.device) for key, w in weights.items()
                    if w > 0 and key != "gan_opt"}
        shape_losses = [k for k in ("coeff_opt", "landmark_opt", "photometric_opt") if k in self.cri]
        if shape_losses and self.fix_d3dfr:
            logger.warning("shape losses %s have no effect while train.fix_d3dfr is true", shape_losses)
        self.use_gan = weights["gan_opt"] > 0
        if self.use_gan:
            self.cri_gan = build_loss(train_opt["gan_opt"]).to(self.device)
            self.net_d = self.model_to_device(build_network(self.opt["network_d"]))
            self._load(self.net_d, "network_d", "params")
            self.net_d.train()
            self.r1_reg_weight = train_opt.get("r1_reg_weight", 10.0)
            self.net_d_iters = train_opt.get("net_d_iters", 1)
            self.net_d_init_iters = train_opt.get("net_d_init_iters", 0)
            self.net_d_reg_every = train_opt.get("net_d_reg_every", 16)
        self.setup_optimizers()
        self.setup_schedulers()

    def setup_optimizers(self):
        train_opt = self.opt["train"]
        # (attribute, options, parameters); a fine-tuned D3DFR uses optim_g's settings unless optim_d3dfr is given
        groups = [("optim_g", train_opt["optim_g"], self.net_g.parameters())]
        if not self.fix_d3dfr:
            groups.append(("optim_d3dfr", train_opt.get("optim_d3dfr", train_opt["optim_g"]),
                           self.shape_prior.d3dfr.parameters()))
        if self.use_gan:
            groups.append(("optim_d", train_opt["optim_d"], self.net_d.parameters()))
        self.optimizers = []
        for key, options, params in groups:
            opt = deepcopy(options)
            optim_type = opt.pop("type")
            if key == "optim_d":
                self._lazy_r1_correction(opt)
            optimizer = self.get_optimizer(optim_type, list(params), **opt)
            self.optimizers.append(optimizer)
            setattr(self, key.replace("optim_", "optimizer_"), optimizer)

    def _lazy_r1_correction(self, optim_d: dict) -> None:
        """StyleGAN2's lazy regularisation: with R1 every k steps, the discriminator's lr is multiplied by
        c = k/(k+1) and Adam's betas raised to the power c (``train.lazy_r1_correction``, default true)."""
        k = self.net_d_reg_every
        if k <= 1 or not self.opt["train"].get("lazy_r1_correction", True):
            return
        ratio = k / (k + 1)
        optim_d["lr"] = optim_d["lr"] * ratio
        if "betas" in optim_d:
            optim_d["betas"] = [beta ** ratio for beta in optim_d["betas"]]
        logger.info("lazy R1 (every %d iterations): optim_d lr %.3g, betas %s", k, optim_d["lr"],
                    optim_d.get("betas"))

    def get_current_learning_rate(self) -> list[float]:
        """The learning rate of every optimizer (generator, then D3DFR and discriminator when they train)."""
        return [optimizer.param_groups[0]["lr"] for optimizer in self.optimizers]

    # --- data and forward ------------------------------------------------------------------

    def feed_data(self, data: dict):
        self.lq = data["lq"].to(self.device)
        self.landmarks = (data["landmarks"] if "landmarks" in data else self._template_landmarks()).to(self.device)
        self.crop_matrix = data["crop_matrix"].to(self.device) if "crop_matrix" in data else None
        if "gt" in data:
            self.gt = data["gt"].to(self.device)

    def _template_landmarks(self) -> torch.Tensor:
        """Landmarks of faces fed without them (BasicSR's PairedImageDataset): the 5 template points of
        ``shape_prior.template`` (default: the training set's template, else ``sgpn``)."""
        default = self.opt.get("datasets", {}).get("train", {}).get("template", "sgpn")
        name = self.opt.get("shape_prior", {}).get("template", default)
        points = torch.from_numpy(get_template(name, self.lq.shape[-1]))
        return points.expand(self.lq.shape[0], -1, -1)

    def _restore(self, net, shape_prior):
        prior = shape_prior(self.lq, self.landmarks, self.crop_matrix)
        return net(self.lq, prior.render, prior.coeffs), prior

    def optimize_parameters(self, current_iter: int):
        loss_dict = OrderedDict()
        # GFPGAN's meaning: the generator (and a fine-tuned D3DFR) steps every net_d_iters iterations once
        # net_d_init_iters are done; the discriminator trains at every iteration from the start
        train_g = not self.use_gan or (current_iter % self.net_d_iters == 0 and current_iter > self.net_d_init_iters)
        if self.use_gan:
            self.net_d.requires_grad_(False)
        if not train_g:
            with torch.no_grad():
                self.output, _ = self._restore(self.net_g, self.train_prior)
            self._optimize_d(current_iter, loss_dict)
            self.log_dict = self.reduce_loss_dict(loss_dict)
            return
        self.optimizer_g.zero_grad()
        if not self.fix_d3dfr:
            self.optimizer_d3dfr.zero_grad()
        self.output, prior = self._restore(self.net_g, self.train_prior)
        total = 0
        if "pixel_opt" in self.cri:
            loss_dict["l_pix"] = self.cri["pixel_opt"](self.output, self.gt)
        if "perceptual_opt" in self.cri:
            loss_dict["l_percep"] = self.cri["perceptual_opt"](self.output, self.gt)
        if "identity_opt" in self.cri:
            loss_dict["l_identity"] = self.cri["identity_opt"](self.output, self.gt)
        if self.use_gan:
            loss_dict["l_g_gan"] = self.cri_gan(self.net_d(self.output), True, is_disc=False)
        if not self.fix_d3dfr and any(k in self.cri for k in ("coeff_opt", "landmark_opt", "photometric_opt")):
            with torch.no_grad():
                prior_hq = self.shape_prior(self.gt, self.landmarks, self.crop_matrix)
            if "coeff_opt" in self.cri:
                loss_dict["l_coeff"] = self.cri["coeff_opt"](prior.coeffs, prior_hq.coeffs)
            if "landmark_opt" in self.cri:
                loss_dict["l_lm"] = self.cri["landmark_opt"](prior.landmarks68, prior_hq.landmarks68, self.lq.shape[-1])
            if "photometric_opt" in self.cri:
                loss_dict["l_photo"] = self.cri["photometric_opt"](prior.render, self.gt, prior.mask)
        for value in loss_dict.values():
            total = total + value
        total.backward()
        self.optimizer_g.step()
        if not self.fix_d3dfr:
            self.optimizer_d3dfr.step()
        if self.use_gan:
            self._optimize_d(current_iter, loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
        self.log_dict = self.reduce_loss_dict(loss_dict)

    def _optimize_d(self, current_iter: int, loss_dict: OrderedDict) -> None:
        """One discriminator step on ``gt`` vs ``output``, with the R1 penalty every ``net_d_reg_every`` iterations."""
        self.net_d.requires_grad_(True)
        self.optimizer_d.zero_grad()
        real = self.net_d(self.gt)
        fake = self.net_d(self.output.detach())
        l_d = self.cri_gan(real, True, is_disc=True) + self.cri_gan(fake, False, is_disc=True)
        loss_dict["l_d"] = l_d
        loss_dict["real_score"] = real.detach().mean()
        loss_dict["fake_score"] = fake.detach().mean()
        l_d.backward()
        if current_iter % self.net_d_reg_every == 0:
            self.gt.requires_grad_(True)
            real = self.net_d(self.gt)
            l_r1 = self.r1_reg_weight / 2 * r1_penalty(real, self.gt) * self.net_d_reg_every + 0 * real[0]
            loss_dict["l_d_r1"] = l_r1.detach().mean()
            l_r1.backward()
        self.optimizer_d.step()

    def test(self):
        """Bare (unwrapped) generator or its EMA and shape prior, in eval mode: no DDP collective runs."""
        net = self.get_bare_model(self.net_g_ema if hasattr(self, "net_g_ema") else self.net_g)
        with _eval_mode(net, self.shape_prior), torch.no_grad():
            output, prior = self._restore(net, self.shape_prior)
        self.output, self.render = output.clamp(-1, 1), prior.render

    def get_current_visuals(self) -> OrderedDict:
        to01 = lambda x: ((x + 1) / 2).detach().cpu()  # noqa: E731  (BasicSR's tensor2img expects [0, 1])
        out = OrderedDict(lq=to01(self.lq), result=to01(self.output))
        if hasattr(self, "gt"):
            out["gt"] = to01(self.gt)
        return out

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """BasicSR's validation loop (same image paths, log lines and best-value tracking) with the metrics of
        :class:`~basicsr_plugin.metrics.ValidationMetrics`: FID over the set, NIQE at any size, LQ-only sets,
        metrics whose weights are missing skipped with a note."""
        dataset_name = dataloader.dataset.opt["name"]
        metrics = ValidationMetrics(self.opt["val"].get("metrics") or {})
        for val_data in tqdm(dataloader, unit="image", disable=not self.opt["val"].get("pbar", False)):
            img_name = os.path.splitext(os.path.basename(val_data["lq_path"][0]))[0]
            self.feed_data(val_data)
            self.test()
            visuals = self.get_current_visuals()
            result = tensor2img([visuals["result"]])
            metrics.add(result, tensor2img([visuals["gt"]]) if "gt" in visuals else None)
            for name in ("gt", "lq", "output"):
                self.__dict__.pop(name, None)
            if save_img:
                imwrite(result, self._visualization_path(img_name, dataset_name, current_iter))
        self.metric_results = metrics.results()
        if not self.metric_results:
            return
        if not hasattr(self, "best_metric_results"):
            self.best_metric_results = {}
        best = self.best_metric_results.setdefault(dataset_name, {})
        for name, value in self.metric_results.items():
            better = metrics.better(name)
            best.setdefault(name, {"better": better, "val": float("-inf") if better == "higher" else float("inf"),
                                   "iter": -1})
            self._update_best_metric_result(dataset_name, name, value, current_iter)
        self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    def _visualization_path(self, img_name: str, dataset_name: str, current_iter) -> str:
        """Where BasicSR saves a validation image (training: per image and iteration; test: per set)."""
        folder = self.opt["path"]["visualization"]
        if self.opt["is_train"]:
            return os.path.join(folder, img_name, f"{img_name}_{current_iter}.png")
        suffix = self.opt["val"].get("suffix") or self.opt["name"]
        return os.path.join(folder, dataset_name, f"{img_name}_{suffix}.png")

    def save(self, epoch: int, current_iter: int):
        if hasattr(self, "net_g_ema"):
            self.save_network([self.net_g, self.net_g_ema], "net_g", current_iter, param_key=["params", "params_ema"])
        else:
            self.save_network(self.net_g, "net_g", current_iter)
        if self.use_gan:
            self.save_network(self.net_d, "net_d", current_iter)
        if self._d3dfr_trains_or_random():
            self.save_network(self.shape_prior.d3dfr, "net_d3dfr", current_iter)
        self.save_training_state(epoch, current_iter)
        if self.opt.get("rank", 0) == 0:
            prune_checkpoints(self.opt["path"]["models"], self.opt["path"]["training_states"],
                              self.opt["logger"].get("keep_checkpoints"))

    @master_only
    def save_network(self, net, net_label: str, current_iter: int, param_key="params"):
        """BasicSR's ``models/<label>_<iter>.pth`` (bare state dicts, no ``module.``), written atomically."""
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        save_dict = {key: {k: v.cpu() for k, v in self.get_bare_model(n).state_dict().items()}
                     for n, key in zip(nets, keys, strict=True)}
        name = f"{net_label}_{'latest' if current_iter == -1 else current_iter}.pth"
        _save_atomic(save_dict, os.path.join(self.opt["path"]["models"], name))

    @master_only
    def save_training_state(self, epoch: int, current_iter: int):
        """BasicSR's ``training_states/<iter>.state`` (optimizers, schedulers), written atomically."""
        if current_iter == -1:
            return
        state = {"epoch": epoch, "iter": current_iter, "optimizers": [o.state_dict() for o in self.optimizers],
                 "schedulers": [s.state_dict() for s in self.schedulers]}
        _save_atomic(state, os.path.join(self.opt["path"]["training_states"], f"{current_iter}.state"))
