"""Peer networks: GPEN-BFR-512 layout and checkpoint loading, peer builders, the peer weights in the zoo."""

from __future__ import annotations

import re

import pytest
import torch

from sgpn_arch.eval.peers import PEERS, build_peer_network, load_peer, peer_weight_names
from sgpn_arch.nets.gpen import GPENGenerator, build_gpen_bfr512
from sgpn_arch.zoo.checkpoints import CheckpointError
from sgpn_arch.zoo.weights import MODEL_ZOO, WeightsError

# GPEN-BFR-512.pth layout, from yangxy/GPEN face_model/gpen_model.py
# FullGenerator(512, 512, 8, channel_multiplier=2, narrow=1, isconcat=True), loaded strictly in face_gan.py.
GPEN_BFR512_KEYS = 163
GPEN_BFR512_PARAMS = 71_005_223          # sum of the shapes below and their repeats
GPEN_BFR512_SHAPES = {
    "ecd0.0.0.weight": (64, 3, 1, 1),
    "ecd0.0.1.bias": (64,),
    "ecd1.0.0.kernel": (4, 4),
    "ecd1.0.1.weight": (128, 64, 3, 3),
    "ecd1.0.2.bias": (128,),
    "ecd3.0.1.weight": (512, 256, 3, 3),
    "ecd7.0.1.weight": (512, 512, 3, 3),
    "final_linear.0.weight": (512, 8192),
    "final_linear.0.bias": (512,),
    "generator.style.1.weight": (512, 512),
    "generator.style.8.bias": (512,),
    "generator.input.input": (1, 512, 4, 4),
    "generator.conv1.conv.weight": (1, 512, 512, 3, 3),
    "generator.conv1.conv.modulation.weight": (512, 512),
    "generator.conv1.noise.weight": (1,),
    "generator.conv1.activate.bias": (1024,),
    "generator.to_rgb1.conv.weight": (1, 3, 1024, 1, 1),
    "generator.to_rgb1.bias": (1, 3, 1, 1),
    "generator.convs.0.conv.weight": (1, 512, 1024, 3, 3),
    "generator.convs.0.conv.blur.kernel": (4, 4),
    "generator.convs.0.conv.modulation.weight": (1024, 512),
    "generator.convs.0.conv.modulation.bias": (1024,),
    "generator.convs.1.conv.weight": (1, 512, 1024, 3, 3),
    "generator.convs.6.conv.weight": (1, 512, 1024, 3, 3),
    "generator.convs.8.conv.weight": (1, 256, 1024, 3, 3),
    "generator.convs.12.conv.weight": (1, 64, 256, 3, 3),
    "generator.convs.13.conv.weight": (1, 64, 128, 3, 3),
    "generator.convs.13.activate.bias": (128,),
    "generator.to_rgbs.0.upsample.kernel": (4, 4),
    "generator.to_rgbs.6.conv.weight": (1, 3, 128, 1, 1),
    "generator.to_rgbs.6.conv.modulation.weight": (128, 512),
}

SMALL_GPEN = dict(size=64, style_dim=32, n_mlp=2, channel_multiplier=2, narrow=0.0625)


@pytest.fixture(scope="module")
def gpen_state() -> dict[str, torch.Tensor]:
    return GPENGenerator().state_dict()


def small_gpen(seed: int = 0) -> GPENGenerator:
    """A small random GPEN whose feature-injection weights are non-zero (the released model's are)."""
    torch.manual_seed(seed)
    model = GPENGenerator(**SMALL_GPEN)
    for name, param in model.named_parameters():
        if name.endswith("noise.weight"):
            param.data.fill_(0.5)
    return model.eval()


def test_gpen_state_dict_matches_official_layout(gpen_state):
    assert len(gpen_state) == GPEN_BFR512_KEYS
    assert sum(v.numel() for k, v in gpen_state.items() if not k.endswith("kernel")) == GPEN_BFR512_PARAMS
    assert {k: tuple(gpen_state[k].shape) for k in GPEN_BFR512_SHAPES if k in gpen_state} == GPEN_BFR512_SHAPES
    assert {k.split(".")[0] for k in gpen_state} == {f"ecd{i}" for i in range(8)} | {"final_linear", "generator"}
    indices = {part: {int(m.group(1)) for k in gpen_state if (m := re.match(rf"generator\.{part}\.(\d+)\.", k))}
               for part in ("style", "convs", "to_rgbs")}
    assert indices == {"style": set(range(1, 9)), "convs": set(range(14)), "to_rgbs": set(range(7))}
    assert not any("noises" in k or "upsamples" in k for k in gpen_state)


def test_gpen_checkpoint_roundtrip(tmp_path):
    model = small_gpen()
    path = tmp_path / "gpen.pth"
    torch.save(model.state_dict(), path)
    loaded = GPENGenerator.from_checkpoint(path, **SMALL_GPEN).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(loaded(x), expected)
        assert expected.shape == x.shape and torch.isfinite(expected).all()
        w, features = loaded.encode(x)
    assert w.shape == (2, 32) and sorted(features) == [4, 8, 16, 32, 64]


def test_gpen_wrong_key_and_shape_give_clear_errors(tmp_path):
    torch.save(GPENGenerator(style_dim=32, narrow=0.0625).state_dict(), tmp_path / "narrow.pth")
    with pytest.raises(CheckpointError, match=r"not a GPEN-BFR-512 generator checkpoint.*size mismatch for ecd0"):
        build_peer_network("gpen", tmp_path / "narrow.pth")   # same keys, other widths
    state = small_gpen().state_dict()
    state["generator.conv1.noise.strength"] = state.pop("generator.conv1.noise.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointError, match=r"Missing key\(s\).*generator\.conv1\.noise\.weight.*\n\t"
                                              r"Unexpected key\(s\).*generator\.conv1\.noise\.strength"):
        GPENGenerator.from_checkpoint(tmp_path / "renamed.pth", **SMALL_GPEN)


def test_build_gpen_bfr512_random_is_eval():
    model = build_gpen_bfr512()
    assert isinstance(model, GPENGenerator) and not model.training


def test_peer_table_and_zoo():
    assert set(PEERS) == {"gfpgan", "gpen", "codeformer"}
    assert peer_weight_names() == {"gfpgan": "GFPGANv1.4.pth", "gpen": "GPEN-BFR-512.pth",
                                   "codeformer": "codeformer.pth"}
    assert MODEL_ZOO["gfpgan_v1.4"].url.endswith("TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth")
    assert MODEL_ZOO["gpen_bfr512"].url.endswith("/robin/models/GPEN-BFR-512.pth")
    assert MODEL_ZOO["codeformer"].url.endswith("/v0.1.0/codeformer.pth")
    with pytest.raises(ValueError, match="unknown peer"):
        build_peer_network("restoreformer")


@pytest.mark.parametrize("name", ["gfpgan", "gpen", "codeformer"])
def test_load_peer_missing_weights(name, tmp_path, monkeypatch):
    spec = PEERS[name].weight
    monkeypatch.setenv("SGPN_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.delenv(spec.env_var, raising=False)
    with pytest.raises(WeightsError, match=re.escape(spec.filename)):
        load_peer(name, allow_download=False)


@pytest.mark.slow
def test_gfpgan_params_ema_checkpoint_loads(tmp_path):
    source = build_peer_network("gfpgan")
    path = tmp_path / "GFPGANv1.4.pth"
    torch.save({"params_ema": source.net.state_dict()}, path)
    loaded = load_peer("gfpgan", path, allow_download=False)
    key = "stylegan_decoder.to_rgbs.6.modulated_conv.weight"
    assert torch.equal(loaded.net.state_dict()[key], source.net.state_dict()[key])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gfpgan", "gpen", "codeformer"])
def test_peer_maps_512_to_512(name):
    torch.manual_seed(0)
    model = build_peer_network(name)
    assert not model.training
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 512, 512) * 2 - 1)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 512, 512)
    assert torch.isfinite(out).all()
