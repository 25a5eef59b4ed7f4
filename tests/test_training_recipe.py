"""The 512 training recipe's building blocks (issue 20): pretrained decoder, pretrain files, data seeding,
option checking, test-time metrics, checkpoints, GFPGAN option parity."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sgpn_arch.nets.decoder_init import load_pretrained_decoder
from sgpn_arch.nets.generator import SGPNGenerator
from sgpn_arch.nets.gpen import GPENGenerator
from sgpn_arch.nets.stylegan2_ops import ConstantInput, FusedLeakyReLU, ModulatedConv2d, ToRGB, stylegan2_channels
from sgpn_arch.zoo.checkpoints import CheckpointError

SMALL = dict(size=32, channel_multiplier=2, narrow=0.125, style_dim=16)


class _AdditiveNoise(nn.Module):
    """rosinality's NoiseInjection (``image + weight · noise``), here with the noise map given."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise):
        return x + self.weight * noise


class _PlainStyledConv(nn.Module):
    def __init__(self, cin, cout, style_dim, upsample=False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, style_dim, upsample=upsample)
        self.noise = _AdditiveNoise()
        self.activate = FusedLeakyReLU(cout)

    def forward(self, x, w, noise):
        return self.activate(self.noise(self.conv(x, w), noise))


class PlainStyleGAN2Synthesis(nn.Module):
    """A plain StyleGAN2 synthesis network with rosinality's module names (keys ``input.input``, ``conv1.*``,
    ``convs.N.*``, ``to_rgb1.*``, ``to_rgbs.N.*``, mapping ``style.1..n``): the reference for the mapping."""

    def __init__(self, size, channel_multiplier, narrow, style_dim, n_mlp=2):
        super().__init__()
        ch = stylegan2_channels(channel_multiplier, narrow)
        self.style = nn.Sequential(nn.Identity(), *[nn.Linear(style_dim, style_dim) for _ in range(n_mlp)])
        self.input = ConstantInput(ch[4])
        self.conv1 = _PlainStyledConv(ch[4], ch[4], style_dim)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        cin = ch[4]
        for i in range(3, int(math.log2(size)) + 1):
            self.convs.append(_PlainStyledConv(cin, ch[2 ** i], style_dim, upsample=True))
            self.convs.append(_PlainStyledConv(ch[2 ** i], ch[2 ** i], style_dim))
            self.to_rgbs.append(ToRGB(ch[2 ** i], style_dim))
            cin = ch[2 ** i]

    def forward(self, w):
        out = self.conv1(self.input(w.shape[0]), w, torch.randn(w.shape[0], 1, 4, 4))
        skip = self.to_rgb1(out, w)
        for i, to_rgb in enumerate(self.to_rgbs):
            res = 2 ** (i + 3)
            out = self.convs[2 * i](out, w, torch.randn(w.shape[0], 1, res, res))
            out = self.convs[2 * i + 1](out, w, torch.randn(w.shape[0], 1, res, res))
            skip = to_rgb(out, w, skip)
        return skip


def _randomise_(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.2 if "bias" in name or "noise" in name else 1.0))


def _synthesis(generator: SGPNGenerator, w: torch.Tensor, features: dict[int, torch.Tensor]) -> torch.Tensor:
    """SGPN's decoder driven by ``w`` directly (mapping skipped), with the same features for LQ and 3D."""
    decoder = generator.netG
    mlp, decoder.mlp = decoder.mlp, nn.Identity()
    try:
        return decoder(w, features, features)
    finally:
        decoder.mlp = mlp


def _features(generator: SGPNGenerator, seed: int) -> dict[int, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    channels = stylegan2_channels(2, SMALL["narrow"])
    return {r: torch.randn(2, channels[r], r, r, generator=gen) for r in (4, 8, 16, 32)}


def _to_basicsr_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """rosinality names -> BasicSR ``StyleGAN2Generator`` names (facts of basicsr/archs/stylegan2_arch.py)."""
    out = {}
    for key, value in state.items():
        key = key.replace("input.input", "constant_input.weight").replace("conv1.noise.weight", "conv1.weight")
        key = key.replace("style.", "style_mlp.") if key.startswith("style.") else key
        key = key.replace("conv1.", "style_conv1.") if key.startswith("conv1.") else key
        key = "style_" + key if key.startswith("convs.") else key
        key = key.replace(".noise.weight", ".weight").replace(".conv.", ".modulated_conv.")
        out[key] = value
    return out


def _to_clean(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BasicSR names -> ``StyleGAN2GeneratorClean`` tensors (the scalings of GFPGAN's conversion script,
    upsampling kernels rotated as the clean model's bilinear upsampling needs)."""
    out = {}
    for key, value in state.items():
        if key.endswith("modulation.weight"):
            value = value / math.sqrt(value.shape[1])
        elif key.endswith("modulated_conv.weight"):
            value = value / math.sqrt(value[0, 0].numel())
            if key.startswith("style_convs.") and int(key.split(".")[1]) % 2 == 0:
                value = value.flip(-1, -2)
        elif key.endswith("activate.bias"):
            key, value = key.replace("activate.bias", "bias"), (value * math.sqrt(2)).view(1, -1, 1, 1)
        out["stylegan_decoder." + key] = value
    return out


def test_pretrained_decoder_in_every_supported_layout(tmp_path, faces_dir):
    """Issue 20 item 1: GPEN, rosinality, BasicSR and Clean StyleGAN2 generators start SGPN's decoder."""
    torch.manual_seed(0)
    w = torch.randn(2, SMALL["style_dim"])
    sgpn_config = dict(SMALL, code_dim=8, n_mlp=2)

    # GPEN: the concatenated layout; same features -> the same image as GPEN's own decoder
    gpen = GPENGenerator(size=32, style_dim=16, n_mlp=2, channel_multiplier=2, narrow=0.125)
    _randomise_(gpen, 1)
    torch.save(gpen.state_dict(), tmp_path / "gpen.pth")
    sgpn = SGPNGenerator(**sgpn_config)
    report = load_pretrained_decoder(sgpn, tmp_path / "gpen.pth")
    assert report.layout == "gpen"
    assert "netG.convs.0.noise.weight" in report.copied and "netG.convs.0.convs_mask.0.weight" in report.not_copied
    features = _features(sgpn, 2)
    with torch.no_grad():
        assert torch.allclose(_synthesis(sgpn, w, features), gpen.generator(w, features), atol=1e-5)

    # rosinality: additive noise off -> SGPN reproduces the StyleGAN2 image whatever the features
    plain = PlainStyleGAN2Synthesis(**SMALL)
    _randomise_(plain, 3)
    with torch.no_grad():
        for layer in [plain.conv1, *plain.convs]:
            layer.noise.weight.zero_()
        expected = plain(w)
    state = plain.state_dict()
    torch.save({"g_ema": state, "latent_avg": torch.zeros(16)}, tmp_path / "rosinality.pt")
    torch.manual_seed(10)            # the same initialisation of what is not copied, for the comparisons below
    sgpn = SGPNGenerator(**sgpn_config)
    assert load_pretrained_decoder(sgpn, tmp_path / "rosinality.pt").layout == "stylegan2_rosinality"
    with torch.no_grad():
        assert torch.allclose(_synthesis(sgpn, w, _features(sgpn, 4)), expected, atol=1e-4)
    loaded = sgpn.netG.state_dict()
    assert torch.all(loaded["convs.2.noise.weight"] == 1.0)          # feature scale: gradients reach the new weights
    half = loaded["convs.2.conv.weight"].shape[2] // 2
    assert torch.all(loaded["convs.2.conv.weight"][:, :, half:] == 0)
    out = _synthesis(sgpn, w, _features(sgpn, 5))
    out.square().mean().backward()
    assert sgpn.netG.convs[2].conv.weight.grad[:, :, half:].abs().sum() > 0

    # BasicSR StyleGAN2Generator (params_ema) and GFPGAN v1.3/v1.4 clean decoder (stylegan_decoder.*): same weights
    basicsr_state = _to_basicsr_names(state)
    for name, payload, layout in (("basicsr.pth", {"params_ema": basicsr_state}, "stylegan2_basicsr"),
                                  ("clean.pth", {"params_ema": _to_clean(basicsr_state)}, "stylegan2_clean")):
        torch.save(payload, tmp_path / name)
        torch.manual_seed(10)
        other = SGPNGenerator(**sgpn_config)
        assert load_pretrained_decoder(other, tmp_path / name).layout == layout
        for key, value in other.netG.state_dict().items():
            if not key.startswith("mlp."):
                assert torch.allclose(value, loaded[key], atol=1e-5), (layout, key)

    # a decoder of another width or a file of another network: one message naming the file and what it is
    torch.save({"g_ema": PlainStyleGAN2Synthesis(32, 2, 0.25, 16).state_dict()}, tmp_path / "wide.pt")
    with pytest.raises(CheckpointError, match=r"wide\.pt \(stylegan2_rosinality\) does not fit.*narrow"):
        load_pretrained_decoder(SGPNGenerator(**sgpn_config), tmp_path / "wide.pt")
    torch.save({"g_ema": PlainStyleGAN2Synthesis(32, 2, 0.0625, 16).state_dict()}, tmp_path / "narrow.pt")
    with pytest.raises(CheckpointError, match=r"narrow\.pt \(stylegan2_rosinality\) does not fit"):
        load_pretrained_decoder(SGPNGenerator(**sgpn_config), tmp_path / "narrow.pt")
    torch.save({"g_ema": PlainStyleGAN2Synthesis(64, 2, 0.125, 16).state_dict()}, tmp_path / "size64.pt")
    with pytest.raises(CheckpointError, match="64 px generator; network_g.size is 32"):
        load_pretrained_decoder(SGPNGenerator(**sgpn_config), tmp_path / "size64.pt")
    torch.save(SGPNGenerator(**sgpn_config).netE.state_dict(), tmp_path / "encoder.pth")
    with pytest.raises(CheckpointError, match="encoder.pth is a checkpoint of an unrecognised network"):
        load_pretrained_decoder(SGPNGenerator(**sgpn_config), tmp_path / "encoder.pth")

    # the YAML option: network_g.decoder_load_path starts net_g (and its EMA copy) from the file
    opt = _small_options(faces_dir, tmp_path)
    g = opt["network_g"]
    gpen = GPENGenerator(size=g["size"], style_dim=g["style_dim"], n_mlp=2, channel_multiplier=g["channel_multiplier"],
                         narrow=g["narrow"])
    _randomise_(gpen, 6)
    torch.save(gpen.state_dict(), tmp_path / "gpen_small.pth")
    opt["network_g"]["decoder_load_path"] = str(tmp_path / "gpen_small.pth")
    model = _model(opt)
    expected = gpen.generator.convs[3].conv.weight
    assert torch.equal(model.get_bare_model(model.net_g).netG.convs[3].conv.weight, expected)
    assert torch.equal(model.net_g_ema.netG.convs[3].conv.weight, expected)


# --- helpers for the BasicSR-level tests ----------------------------------------------------------------

def _small_options(faces_dir, tmp_path, **train_changes) -> dict:
    """options/train_sgpn_cpu_small.yml on the shared faces, as BasicSR hands it to the model."""
    import yaml

    from tests.test_basicsr_plugin import OPTIONS

    opt = yaml.safe_load((OPTIONS / "train_sgpn_cpu_small.yml").read_text())
    opt["datasets"]["train"]["dataroot_gt"] = str(faces_dir / "real_lq_cropped")
    opt["datasets"]["val"]["dataroot_gt"] = str(faces_dir / "hq_aligned")
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    opt["path"].update(experiments_root=str(tmp_path), models=str(tmp_path / "models"),
                       training_states=str(tmp_path / "states"), log=str(tmp_path),
                       visualization=str(tmp_path / "visualization"))
    opt["train"].update(train_changes)
    return opt


def _model(opt):
    import basicsr_plugin  # noqa: F401
    from basicsr.utils.registry import MODEL_REGISTRY

    return MODEL_REGISTRY.get("SGPNModel")(opt)


def _small_generator_state(opt, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    config = {k: v for k, v in opt["network_g"].items() if k != "type"}
    return SGPNGenerator(**config).state_dict()


def _same(module: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    own = module.state_dict()
    return all(torch.equal(own[k], v) for k, v in state.items())


def test_pretrain_loads_official_basicsr_and_plain_files(faces_dir, tmp_path, official_weights):
    """Issue 20 item 2: with or without param_key_g, official (plain), params+params_ema and params-only files
    load into net_g and its EMA; a foreign or mis-sized file names itself."""
    from basicsr_plugin.pretrained import load_pretrained

    opt = _small_options(faces_dir, tmp_path)
    plain, ema = _small_generator_state(opt, 1), _small_generator_state(opt, 2)
    files = {"plain": plain, "basicsr": {"params": plain, "params_ema": ema}, "params_only": {"params": plain},
             "ddp": {"params": {f"module.{k}": v for k, v in plain.items()}}}
    for name, payload in files.items():
        torch.save(payload, tmp_path / f"{name}.pth")
    for name, param_key in (("plain", None), ("plain", "params"), ("basicsr", "params"), ("basicsr", None),
                            ("params_only", "params"), ("ddp", "params")):
        opt = _small_options(faces_dir, tmp_path)
        opt["path"].update(pretrain_network_g=str(tmp_path / f"{name}.pth"), param_key_g=param_key)
        model = _model(opt)
        assert _same(model.get_bare_model(model.net_g), plain), (name, param_key)
        assert _same(model.net_g_ema, ema if name == "basicsr" else plain), (name, param_key)

    generator = SGPNGenerator(**{k: v for k, v in opt["network_g"].items() if k != "type"})
    gfpgan_like = {"conv_body_first.weight": torch.zeros(1), "final_linear.weight": torch.zeros(1),
                   "stylegan_decoder.constant_input.weight": torch.zeros(1), "condition_scale.0.weight": torch.zeros(1)}
    torch.save({"params_ema": gfpgan_like}, tmp_path / "GFPGANv1.4.pth")
    with pytest.raises(CheckpointError, match=r"GFPGANv1\.4\.pth \(param key 'params_ema'\) is a GFPGAN .* does not fit"):
        load_pretrained(generator, tmp_path / "GFPGANv1.4.pth", "params")
    with pytest.raises(CheckpointError, match=r"sgpn_official\.pth \(plain state dict\) is a SGPN generator .* "
                                              r"network_g \{'size': 512, 'channel_multiplier': 2"):
        load_pretrained(generator, official_weights["sgpn"], "params")
    torch.save({"g": plain}, tmp_path / "other_wrapper.pth")
    with pytest.raises(CheckpointError, match=r"other_wrapper\.pth has neither 'params' nor 'params_ema'"):
        load_pretrained(generator, tmp_path / "other_wrapper.pth", "params")


def test_degradations_differ_across_workers_and_epochs(faces_dir):
    """Issue 20 item 3: every draw of the same face gets its own degradation, in every worker and epoch."""
    import basicsr_plugin  # noqa: F401
    from basicsr.utils.registry import DATASET_REGISTRY
    from torch.utils.data import DataLoader

    dataset = DATASET_REGISTRY.get("SGPNFaceDataset")(dict(
        name="faces", type="SGPNFaceDataset", phase="train", dataroot_gt=str(faces_dir / "hq_aligned"),
        io_backend={"type": "disk"}, template="ffhq", out_size=64, use_hflip=False, seed=3))

    def epoch(loader):
        return [batch["lq"][0] for batch in loader]

    torch.manual_seed(0)
    for workers in (2, 0):
        loader = DataLoader(dataset, batch_size=1, sampler=[0] * 16, num_workers=workers)
        first, second = epoch(loader), epoch(loader)
        draws = first + second
        distinct = {draw.numpy().tobytes() for draw in draws}
        assert len(distinct) == len(draws) == 32, (workers, len(distinct))


def test_option_typos_and_missing_dataroot_fail_at_start_up_naming_the_key(faces_dir, tmp_path):
    """Issue 20 item 4: unknown/misspelled keys anywhere, a missing dataroot: one message naming each."""
    from basicsr_plugin.options_check import OptionsError, check_options

    opt = _small_options(faces_dir, tmp_path)
    check_options(opt)                                        # the shipped configuration is clean
    opt["manual_sed"] = 0
    opt["logger"]["print_frq"] = opt["logger"].pop("print_freq")
    opt["path"]["pretrain_network_gg"] = "net_g.pth"
    opt["train"]["pixel_opt"]["loss_wieght"] = opt["train"]["pixel_opt"].pop("loss_weight")
    opt["train"]["optim_g"]["betas_"] = [0, 0.99]
    opt["network_g"]["chanel_multiplier"] = 1
    opt["val"]["metrics"]["psnr"]["type"] = "calculate_psnrr"
    del opt["datasets"]["train"]["dataroot_gt"]
    opt["datasets"]["val"]["dataroot_gt"] = str(tmp_path / "no_such_folder")
    with pytest.raises(OptionsError) as err:
        check_options(opt)
    message = str(err.value)
    for expected in ("'manual_sed' (did you mean 'manual_seed'?)", "'print_frq' (did you mean 'print_freq'?)",
                     "missing option print_freq in logger", "'pretrain_network_gg' (did you mean 'pretrain_network_g'?)",
                     "train.pixel_opt: 'loss_wieght' (did you mean 'loss_weight'?)", "train.optim_g: 'betas_'",
                     "network_g: 'chanel_multiplier' (did you mean 'channel_multiplier'?)",
                     "'calculate_psnrr' is not a metric here (did you mean 'calculate_psnr'?)",
                     "datasets.train.dataroot_gt is missing", f"datasets.val.dataroot_gt {tmp_path / 'no_such_folder'} "
                     "does not exist"):
        assert expected in message, (expected, message)

    from basicsr.data import build_dataset       # BasicSR builds the datasets before the model: they say it too

    train_set = dict(_small_options(faces_dir, tmp_path)["datasets"]["train"], phase="train")
    with pytest.raises(KeyError, match="datasets.train needs dataroot_gt"):
        build_dataset({k: v for k, v in train_set.items() if k != "dataroot_gt"})
    with pytest.raises(FileNotFoundError, match="datasets.train.dataroot_gt .*no_such_folder is not a folder"):
        build_dataset(dict(train_set, dataroot_gt=str(tmp_path / "no_such_folder")))

    opt = _small_options(faces_dir, tmp_path, gan_opt={"type": "GANLoss", "gan_type": "wgan_softplus", "loss_wieght": 1})
    with pytest.raises(KeyError, match="did you mean 'loss_weight'"):
        _model(opt)                                           # the model checks at start-up too


@pytest.mark.slow
def test_basicsr_test_runs_lq_only_with_fid_niqe_at_128_and_skips_missing_weights(faces_dir, tmp_path):
    """Issue 20 item 5: `basicsr test` on an LQ-only 128-px set: NIQE works at 128, FID is a validation metric
    (generated Inception weights and statistics), a metric whose weights are missing is skipped with a note."""
    import shutil

    import yaml

    from sgpn_arch.eval.metrics.fid import FIDInception
    from tests.test_basicsr_plugin import OPTIONS, _basicsr

    lq = tmp_path / "lq"
    lq.mkdir()
    for i, path in enumerate(sorted((faces_dir / "real_lq_cropped").iterdir())[:2]):
        shutil.copy(path, lq / f"face{i}{path.suffix}")
    torch.manual_seed(0)
    torch.save(FIDInception().net.state_dict(), tmp_path / "inception.pth")
    torch.save({"mean": torch.zeros(2048).numpy(), "cov": torch.eye(2048).numpy()}, tmp_path / "stats.pth")
    small = yaml.safe_load((OPTIONS / "train_sgpn_cpu_small.yml").read_text())
    opt = yaml.safe_load((OPTIONS / "test_sgpn.yml").read_text())
    opt["name"] = "lq_only"
    opt["num_gpu"] = 0
    opt["datasets"] = {"test_1": {"name": "lq_faces", "type": "SGPNFaceDataset", "dataroot_lq": str(lq),
                                  "io_backend": {"type": "disk"}, "template": "ffhq", "out_size": 128}}
    opt["network_g"] = small["network_g"]
    opt["shape_prior"] = {"bfm_folder": "synthetic", "renderer_backend": "torch"}
    opt["path"] = {"pretrain_network_g": None, "pretrain_network_d3dfr": None}
    opt["val"]["metrics"] = {
        "niqe": {"type": "calculate_niqe", "crop_border": 0},
        "fid": {"type": "calculate_fid_ffhq", "weights": str(tmp_path / "inception.pth"),
                "stats": str(tmp_path / "stats.pth"), "device": "cpu"},
        "fid_no_weights": {"type": "calculate_fid_ffhq", "weights": str(tmp_path / "no_inception.pth"),
                           "stats": str(tmp_path / "stats.pth"), "device": "cpu"},
    }
    options = tmp_path / "lq_only.yml"
    options.write_text(yaml.safe_dump(opt, sort_keys=False))
    run = _basicsr("test", options, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    log = next((tmp_path / "results" / "lq_only").glob("test_*.log")).read_text()
    assert "# niqe:" in log and "# fid:" in log
    assert "validation metric fid_no_weights skipped" in log and "no_inception.pth" in log
    assert len(list((tmp_path / "results" / "lq_only" / "visualization" / "lq_faces").glob("*.png"))) == 2


def test_checkpoints_hold_only_what_trains_and_keep_the_last_n(faces_dir, tmp_path, official_weights):
    """Issue 20 item 6: a frozen pretrained D3DFR is not saved (resuming reloads its file); keep_checkpoints."""
    opt = _small_options(faces_dir, tmp_path)
    opt["path"]["pretrain_network_d3dfr"] = str(official_weights["d3dfr"])
    opt["path"]["param_key_d3dfr"] = None
    with pytest.raises(ValueError, match=r"ignore_resume_networks: \[network_d3dfr\]"):
        _model(opt)                     # frozen + not saved: resuming must know where the D3DFR comes from
    opt["path"]["ignore_resume_networks"] = ["network_d3dfr"]
    opt["logger"]["keep_checkpoints"] = 2
    model = _model(opt)
    for folder in ("models", "states"):
        (tmp_path / folder).mkdir()
    for it in (2, 4, 6):
        model.save(0, it)
    model.save(0, -1)                   # BasicSR's final "latest" save
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "net_d_4.pth", "net_d_6.pth", "net_d_latest.pth", "net_g_4.pth", "net_g_6.pth", "net_g_latest.pth"]
    assert sorted(p.name for p in (tmp_path / "states").iterdir()) == ["4.state", "6.state"]

    opt = _small_options(faces_dir, tmp_path / "fine_tuned", fix_d3dfr=False)
    opt["path"]["pretrain_network_d3dfr"] = str(official_weights["d3dfr"])
    opt["path"]["param_key_d3dfr"] = None
    model = _model(opt)
    for folder in ("models", "states"):
        (tmp_path / "fine_tuned" / folder).mkdir(parents=True)
    model.save(0, 2)
    assert (tmp_path / "fine_tuned" / "models" / "net_d3dfr_2.pth").is_file()


def test_gfpgan_option_parity(faces_dir, tmp_path):
    """Issue 20 item 7: lazy-R1 correction, net_d_init_iters as in GFPGAN, every lr logged, GFPGAN dataset keys,
    a PairedImageDataset validation set without landmarks."""
    import numpy as np

    import basicsr_plugin  # noqa: F401
    from basicsr.data import build_dataset

    from sgpn_arch.eval.bench import make_pairs
    from sgpn_arch.pipeline.align import get_template

    opt = _small_options(faces_dir, tmp_path, net_d_init_iters=2, net_d_reg_every=16)
    model = _model(opt)
    ratio = 16 / 17
    assert model.optimizer_d.param_groups[0]["lr"] == pytest.approx(2e-3 * ratio)
    assert model.optimizer_d.param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** ratio))
    assert model.get_current_learning_rate() == pytest.approx([2e-3, 2e-3 * ratio])

    dataset = build_dataset(dict(opt["datasets"]["train"], phase="train"))
    batch = {k: torch.stack([dataset[0][k], dataset[1][k]]) for k in ("lq", "gt", "landmarks", "crop_matrix")}
    g_before = {k: v.clone() for k, v in model.get_bare_model(model.net_g).state_dict().items()}
    d_before = {k: v.clone() for k, v in model.get_bare_model(model.net_d).state_dict().items()}
    model.feed_data(batch)
    model.optimize_parameters(1)        # within net_d_init_iters: only the discriminator learns
    assert _same(model.get_bare_model(model.net_g), g_before) and not _same(model.get_bare_model(model.net_d), d_before)
    assert "l_d" in model.log_dict and "l_pix" not in model.log_dict
    model.feed_data(batch)
    model.optimize_parameters(3)
    assert not _same(model.get_bare_model(model.net_g), g_before) and "l_pix" in model.log_dict

    # GFPGAN's dataset keys: kernel_list/kernel_prob, gt_gray, color_jitter_pt_prob, mean/std
    gfpgan_keys = dict(opt["datasets"]["train"], phase="train", kernel_list=["iso", "aniso"], kernel_prob=[0.25, 0.75],
                       gray_prob=1.0, gt_gray=True, color_jitter_pt_prob=1.0, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    dataset = build_dataset(gfpgan_keys)
    assert dataset.degrade.anisotropic_prob == 0.75 and dataset.degrade.color_jitter_pt_prob == 1.0
    item = dataset[0]
    assert torch.equal(item["gt"][0], item["gt"][1]) and torch.equal(item["gt"][1], item["gt"][2])   # grey target
    assert torch.equal(item["lq"][0], item["lq"][1])
    jittered = build_dataset(dict(gfpgan_keys, gray_prob=0.0, seed=5))[0]["lq"]
    plain = build_dataset(dict(gfpgan_keys, gray_prob=0.0, seed=5, color_jitter_pt_prob=0.0))[0]["lq"]
    assert (jittered - plain).abs().mean() > 0.01             # brightness/contrast/saturation/hue jitter
    with pytest.raises(ValueError, match=r"mean must be \[0.5, 0.5, 0.5\]"):
        build_dataset(dict(gfpgan_keys, mean=[0.485, 0.456, 0.406]))
    with pytest.raises(ValueError, match="'iso' and 'aniso'"):
        build_dataset(dict(gfpgan_keys, kernel_list=["iso", "generalized_iso"]))

    # BasicSR's PairedImageDataset (no landmarks): the model uses the template's points
    hq, lq = make_pairs(faces_dir / "hq_aligned", tmp_path / "pairs", seed=0)
    paired = build_dataset(dict(name="pairs", type="PairedImageDataset", phase="val", scale=1, dataroot_gt=str(hq),
                                dataroot_lq=str(lq), io_backend={"type": "disk"}, mean=[0.5] * 3, std=[0.5] * 3))
    sample = paired[0]
    size = opt["network_g"]["size"]
    resize = lambda t: torch.nn.functional.interpolate(t[None], size=(size, size), mode="area")   # noqa: E731
    model.feed_data({"lq": resize(sample["lq"]), "gt": resize(sample["gt"])})
    model.test()
    assert model.output.shape == (1, 3, size, size) and torch.isfinite(model.output).all()
    assert np.allclose(model.landmarks[0].numpy(), get_template("ffhq", size))
