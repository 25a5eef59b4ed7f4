"""BasicSR plugin: `basicsr train` runs, checkpoints and auto-resumes; options are validated; the 512 recipe builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import basicsr_plugin  # noqa: F401  (registers the plugin)
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

REPO = Path(__file__).resolve().parents[1]
OPTIONS = REPO / "options"


def _load_options(name: str) -> dict:
    with open(OPTIONS / name) as fin:
        return yaml.safe_load(fin)


def _write_options(opt: dict, folder: Path) -> Path:
    path = folder / f"{opt['name']}.yml"
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def _basicsr(command: str, options: Path, *flags: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="2")
    return subprocess.run([sys.executable, "-m", "basicsr_plugin", command, "-opt", str(options), *flags],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def _small_options(faces_dir: Path, total_iter: int) -> dict:
    opt = _load_options("train_sgpn_cpu_small.yml")
    opt["datasets"]["train"]["dataroot_gt"] = str(faces_dir / "real_lq_cropped")
    opt["datasets"]["train"]["batch_size_per_gpu"] = 2
    opt["datasets"]["val"]["dataroot_gt"] = str(faces_dir / "hq_aligned")
    opt["train"]["total_iter"] = total_iter
    opt["val"]["val_freq"] = 2
    opt["logger"].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    return opt


def test_everything_is_registered():
    for registry, names in ((ARCH_REGISTRY, ["SGPNGenerator", "SGPNDiscriminator", "ReconNet", "ArcFaceResNet18"]),
                            (MODEL_REGISTRY, ["SGPNModel"]), (DATASET_REGISTRY, ["SGPNFaceDataset"]),
                            (LOSS_REGISTRY, ["SGPNPerceptualLoss", "IdentityLoss", "CoefficientLoss", "LandmarkLoss",
                                             "PhotometricLoss"]),
                            (METRIC_REGISTRY, ["calculate_lpips", "calculate_identity_deg", "calculate_lmd",
                                               "calculate_fid_ffhq", "calculate_niqe"])):
        for name in names:
            assert registry.get(name) is not None


@pytest.mark.slow
def test_small_config_trains_saves_and_auto_resumes(tmp_path, faces_dir):
    options = _write_options(_small_options(faces_dir, total_iter=4), tmp_path)
    first = _basicsr("train", options, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    root = tmp_path / "experiments" / "sgpn_cpu_small"
    checkpoint = torch.load(root / "models" / "net_g_4.pth", map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"params", "params_ema"}
    assert (root / "models" / "net_d_4.pth").is_file() and (root / "models" / "net_d3dfr_4.pth").is_file()
    assert (root / "training_states" / "4.state").is_file()
    log = next(root.glob("train_sgpn_cpu_small_*.log")).read_text()
    assert "# psnr:" in log and "# ssim:" in log
    assert list((root / "visualization").rglob("*.png"))

    options = _write_options(_small_options(faces_dir, total_iter=6), tmp_path)
    resumed = _basicsr("train", options, "--auto_resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    logs = "".join(p.read_text() for p in root.glob("train_sgpn_cpu_small_*.log"))
    assert "Resuming training from epoch" in logs and "iter: 4." in logs
    assert "iter:       5," in logs and "iter:       1," in logs
    assert (root / "training_states" / "6.state").is_file()


def _model_options(faces_dir: Path, tmp_path: Path, **train_changes) -> dict:
    opt = _small_options(faces_dir, total_iter=1)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    opt["path"].update(experiments_root=str(tmp_path), models=str(tmp_path / "models"),
                       training_states=str(tmp_path / "states"), log=str(tmp_path))
    opt["train"].update(train_changes)
    return opt


def test_zero_weight_losses_build_nothing_and_cost_nothing(faces_dir, tmp_path):
    from basicsr.data import build_dataset

    missing = str(tmp_path / "no_such_weights.pth")
    opt = _model_options(faces_dir, tmp_path, gan_opt={"type": "GANLoss", "gan_type": "wgan_softplus", "loss_weight": 0},
                         perceptual_opt={"type": "SGPNPerceptualLoss", "layer_weights": {"conv3_4": 1.0},
                                         "vgg_path": missing, "loss_weight": 0},
                         identity_opt={"type": "IdentityLoss", "arcface_path": missing, "loss_weight": 0})
    model = MODEL_REGISTRY.get("SGPNModel")(opt)
    assert set(model.cri) == {"pixel_opt"}
    assert not hasattr(model, "net_d") and len(model.optimizers) == 1

    dataset = build_dataset(dict(opt["datasets"]["train"], phase="train"))
    batch = {k: torch.stack([dataset[0][k], dataset[1][k]]) for k in ("lq", "gt", "landmarks", "crop_matrix")}
    model.feed_data(batch)
    model.optimize_parameters(1)
    assert set(model.log_dict) == {"l_pix"}

    opt["train"]["perceptual_opt"]["loss_weight"] = 1.0   # the same options with a weight do build the VGG
    with pytest.raises(FileNotFoundError, match="no_such_weights.pth"):
        MODEL_REGISTRY.get("SGPNModel")(opt)


def test_typos_in_options_fail_naming_the_key(faces_dir, tmp_path):
    opt = _model_options(faces_dir, tmp_path, pixl_opt={"type": "L1Loss", "loss_weight": 1.0})
    with pytest.raises(KeyError, match="pixl_opt"):
        MODEL_REGISTRY.get("SGPNModel")(opt)

    dataset_opt = dict(_small_options(faces_dir, 1)["datasets"]["train"], phase="train", blur_sigm=[0.1, 3])
    with pytest.raises(KeyError, match="blur_sigm"):
        DATASET_REGISTRY.get("SGPNFaceDataset")(dataset_opt)

    opt = _small_options(faces_dir, total_iter=1)
    opt["datasets"]["train"]["noise_rang"] = [0, 5]
    run = _basicsr("train", _write_options(opt, tmp_path), cwd=tmp_path)
    assert run.returncode != 0 and "noise_rang" in run.stderr
    assert not list((tmp_path / "experiments").rglob("*.pth"))


def test_dataset_yields_what_the_shape_branch_needs(faces_dir):
    from sgpn_arch.pipeline.align import get_template

    opt = dict(_small_options(faces_dir, 1)["datasets"]["val"], phase="val")
    dataset = DATASET_REGISTRY.get("SGPNFaceDataset")(opt)
    first, again = dataset[0], dataset[0]
    assert first["lq"].shape == first["gt"].shape == (3, 128, 128)
    assert torch.equal(first["lq"], again["lq"])            # validation degradation is fixed per image
    assert first["gt"].min() >= -1 and first["gt"].max() <= 1
    assert torch.allclose(first["landmarks"], torch.as_tensor(get_template("ffhq", 128)))
    assert first["crop_matrix"].shape == (2, 3)


@pytest.mark.slow
def test_full_recipe_builds_every_network_at_512_and_runs_one_iteration(tmp_path, faces_dir, shared_dir,
                                                                       official_weights):
    """options/train_sgpn.yml as written, pointed at local files: every loss on, D3DFR fine-tuned, batch 1."""
    from torchvision.models import vgg19

    from sgpn_arch.nets.arcface import ArcFaceResNet18

    torch.save(vgg19(weights=None).state_dict(), tmp_path / "vgg19.pth")
    torch.save(ArcFaceResNet18().state_dict(), tmp_path / "arcface.pth")
    opt = _load_options("train_sgpn.yml")
    train_data = opt["datasets"]["train"]
    train_data.update(dataroot_gt=str(faces_dir / "hq_aligned"), io_backend={"type": "disk"}, batch_size_per_gpu=1,
                      num_worker_per_gpu=0)
    del opt["datasets"]["val"], opt["val"]
    opt["shape_prior"]["bfm_folder"] = "synthetic"
    opt["path"]["pretrain_network_d3dfr"] = str(official_weights["d3dfr"])   # official (plain) layout
    opt["train"]["total_iter"] = 1
    opt["train"]["perceptual_opt"]["vgg_path"] = str(tmp_path / "vgg19.pth")
    opt["train"]["identity_opt"]["arcface_path"] = str(tmp_path / "arcface.pth")
    opt["train"]["net_d_reg_every"] = 1                       # exercise the R1 step too
    opt["logger"].update(print_freq=1, use_tb_logger=False)
    run = _basicsr("train", _write_options(opt, tmp_path), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    root = tmp_path / "experiments" / opt["name"]
    log = next(root.glob("*.log")).read_text()
    for name in ("l_pix", "l_percep", "l_identity", "l_g_gan", "l_coeff", "l_lm", "l_photo", "l_d", "l_d_r1"):
        assert f"{name}: " in log, name
    for network, table in (("net_g", "state_dict_sgpn_generator.json"), ("net_d", "state_dict_sgpn_discriminator.json"),
                           ("net_d3dfr", "state_dict_d3dfr_reconnet.json")):
        saved = torch.load(root / "models" / f"{network}_latest.pth", map_location="cpu", weights_only=True)
        reference = json.loads((shared_dir / "reference" / table).read_text())
        for key in ("params", "params_ema") if network == "net_g" else ("params",):
            assert {k: list(v.shape) for k, v in saved[key].items()} == reference, (network, key)


@pytest.mark.slow
def test_basicsr_test_scores_pairs_with_a_checkpoint(tmp_path, faces_dir, tiny_weights):
    """`basicsr test -opt options/test_sgpn.yml` on CelebA-Test-like pairs, official-layout weights."""
    from sgpn_arch.eval.bench import make_pairs
    from sgpn_arch.zoo.checkpoints import PRESETS

    hq, lq = make_pairs(faces_dir / "hq_aligned", tmp_path / "pairs", seed=0)
    opt = _load_options("test_sgpn.yml")
    opt["datasets"]["test_1"].update(dataroot_gt=str(hq), dataroot_lq=str(lq))
    opt["network_g"].update(PRESETS["tiny"])
    opt["shape_prior"]["bfm_folder"] = "synthetic"
    opt["path"].update(pretrain_network_g=str(tiny_weights["sgpn"]), pretrain_network_d3dfr=str(tiny_weights["d3dfr"]))
    opt["val"]["metrics"] = {k: v for k, v in opt["val"]["metrics"].items() if k in ("psnr", "ssim", "niqe")}
    run = _basicsr("test", _write_options(opt, tmp_path), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    root = tmp_path / "results" / opt["name"]
    log = next(root.glob("test_*.log")).read_text()
    assert "# psnr:" in log and "# ssim:" in log and "# niqe:" in log
    saved = sorted((root / "visualization" / "CelebA-Test").glob("*.png"))
    assert [p.name.split("_test_")[0] for p in saved] == ["gpen_00002", "gpen_00009"]
