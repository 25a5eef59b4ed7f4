"""Distributed training through BasicSR: torchrun (2 gloo processes on the CPU), slurm variables, atomic
checkpoints and --auto_resume past a killed or truncated write."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import basicsr_plugin  # noqa: F401  (registers the plugin)
from basicsr.utils.registry import MODEL_REGISTRY
from basicsr_plugin import distributed
from basicsr_plugin.cli import load_resume_state

REPO = Path(__file__).resolve().parents[1]
NAME = "sgpn_ddp_tiny"

# Runs the `basicsr` command, then writes the checksums of the model this rank trained to checksums_rank<RANK>.json.
CHECKSUM_RUNNER = """
import json, os, sys
sys.path.insert(0, {tests!r})
from basicsr_plugin import cli
import basicsr.train
from test_ddp import checksums
built = []
build_model = basicsr.train.build_model
basicsr.train.build_model = lambda opt: built.append(build_model(opt)) or built[-1]
cli.main(sys.argv[1:])
with open(f"checksums_rank{{os.environ.get('RANK', 0)}}.json", "w") as fout:
    json.dump(checksums(built[0]), fout)
""".format(tests=str(REPO / "tests"))

# Runs the `basicsr` command with torch.save killed (SIGKILL) half-way through writing the state of iteration 2.
KILLING_RUNNER = """
import io, os, signal, sys
import torch
import basicsr_plugin
from basicsr_plugin import cli
save = torch.save
def save_then_die(obj, f, *args, **kwargs):
    if not os.path.basename(str(f)).lstrip(".").startswith("2.state"):
        return save(obj, f, *args, **kwargs)
    data = io.BytesIO()
    save(obj, data)
    with open(f, "wb") as fout:
        fout.write(data.getvalue()[: len(data.getvalue()) // 2])
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = save_then_die
cli.main(sys.argv[1:])
"""


def checksums(model) -> dict[str, str]:
    """sha256 of every tensor of the bare generator, EMA, discriminator and D3DFR of an SGPNModel."""
    nets = {"net_g": model.net_g, "net_g_ema": model.net_g_ema, "net_d": model.net_d,
            "net_d3dfr": model.shape_prior.d3dfr}
    return {f"{name}.{key}": hashlib.sha256(value.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
            for name, net in nets.items() for key, value in model.get_bare_model(net).state_dict().items()}


def _tiny_options(faces_dir: Path, *, fine_tune_d3dfr: bool) -> dict:
    """options/train_sgpn_cpu_small.yml at batch 1: 2 iterations, R1, a checkpoint and validation at the 2nd."""
    with open(REPO / "options" / "train_sgpn_cpu_small.yml") as fin:
        opt = yaml.safe_load(fin)
    opt["name"] = NAME
    opt["datasets"]["train"].update(dataroot_gt=str(faces_dir / "real_lq_cropped"), batch_size_per_gpu=1)
    opt["datasets"]["val"]["dataroot_gt"] = str(faces_dir / "hq_aligned")
    opt["train"].update(total_iter=2, net_d_reg_every=2, fix_d3dfr=not fine_tune_d3dfr)
    if fine_tune_d3dfr:      # D3DFR wrapped in DDP and trained through the generator and the coefficient loss
        opt["train"]["optim_d3dfr"] = {"type": "Adam", "lr": 1e-5}
        opt["train"]["coeff_opt"] = {"type": "CoefficientLoss", "loss_weight": 1.0}
    opt["val"]["val_freq"] = 2
    opt["logger"].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    return opt


def _write(opt: dict, folder: Path) -> Path:
    path = folder / f"{opt['name']}.yml"
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop(distributed.BACKEND_ENV, None)
    if torch.cuda.is_available():           # the CPU options file: gloo even where GPUs exist
        env[distributed.BACKEND_ENV] = "gloo"
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def _logs(root: Path) -> str:
    return "".join(p.read_text() for p in sorted(root.glob(f"train_{NAME}_*.log")))


def _single_process_model(opt: dict, tmp_path: Path):
    opt = dict(opt, is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    opt["path"] = dict(opt["path"], experiments_root=str(tmp_path), models=str(tmp_path / "models"),
                       training_states=str(tmp_path / "states"), log=str(tmp_path))
    return MODEL_REGISTRY.get("SGPNModel")(opt)


@pytest.mark.slow
def test_torchrun_two_gloo_processes_train_identically_save_and_resume(tmp_path, faces_dir):
    opt = _tiny_options(faces_dir, fine_tune_d3dfr=True)
    options = _write(opt, tmp_path)
    runner = tmp_path / "runner.py"
    runner.write_text(CHECKSUM_RUNNER)
    run = _run(_torchrun(str(runner), "train", "-opt", str(options), "--launcher", "pytorch"), tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"checksums_rank{r}.json").read_text()) for r in (0, 1))
    assert len(rank0) > 300 and rank0 == rank1, sorted(k for k in rank0 if rank0[k] != rank1.get(k))[:10]

    root = tmp_path / "experiments" / NAME
    log = _logs(root)
    assert "distributed: 2 processes, gloo backend" in log and "World size (gpu number): 2" in log
    assert "l_d_r1: " in log and "l_coeff: " in log and "# psnr:" in log
    assert len(list(root.glob("train_*.log"))) == 1          # rank 0 alone logs and writes
    assert (root / "training_states" / "2.state").is_file() and list((root / "visualization").rglob("*.png"))
    assert not list(root.rglob("*.part"))
    saved = torch.load(root / "models" / "net_d3dfr_2.pth", map_location="cpu", weights_only=True)["params"]
    running = {k: v for k, v in saved.items() if "running_" in k or "num_batches" in k}
    assert running and all(torch.equal(v, torch.zeros_like(v) if "mean" in k or "num_batches" in k
                                       else torch.ones_like(v)) for k, v in running.items())  # BatchNorm frozen

    # the DDP checkpoint and training state load into a single-process model
    opt["path"].update({f"pretrain_network_{n}": str(root / "models" / f"net_{n}_2.pth") for n in ("g", "d", "d3dfr")})
    model = _single_process_model(opt, tmp_path / "single")
    assert checksums(model) == rank0
    model.resume_training(torch.load(root / "training_states" / "2.state", map_location="cpu", weights_only=False))

    # --auto_resume under torchrun, with the command line of the README
    resumed = _run(_torchrun("-m", "basicsr_plugin", "train", "-opt", str(options), "--launcher", "pytorch",
                             "--auto_resume", "--force_yml", "train:total_iter=3", "logger:save_checkpoint_freq=1"),
                   tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    log = _logs(root)
    assert "Resuming training from epoch: 0, iter: 2." in log and "iter:       3," in log
    assert (root / "training_states" / "3.state").is_file() and (root / "models" / "net_g_3.pth").is_file()


@pytest.mark.slow
def test_a_run_killed_while_writing_a_checkpoint_resumes_from_the_previous_one(tmp_path, faces_dir):
    opt = _tiny_options(faces_dir, fine_tune_d3dfr=False)
    opt["train"]["gan_opt"]["loss_weight"] = 0
    opt["logger"]["save_checkpoint_freq"] = 1
    del opt["val"], opt["datasets"]["val"]
    options = _write(opt, tmp_path)
    runner = tmp_path / "killing_runner.py"
    runner.write_text(KILLING_RUNNER)
    killed = _run([sys.executable, str(runner), "train", "-opt", str(options)], tmp_path)
    assert killed.returncode == -9, killed.stderr[-3000:]
    states = tmp_path / "experiments" / NAME / "training_states"
    assert sorted(p.name for p in states.glob("*.state")) == ["1.state"]        # no truncated 2.state
    assert len(list(states.glob(".2.state.*.part"))) == 1                         # the write that was killed

    (states / "8.state").write_bytes((states / "1.state").read_bytes()[:100])    # e.g. a full disk
    resumed = _run([sys.executable, "-m", "basicsr_plugin", "train", "-opt", str(options), "--auto_resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "skipping unreadable training state" in resumed.stderr and "8.state" in resumed.stderr
    log = _logs(tmp_path / "experiments" / NAME)
    assert "Resuming training from epoch: 0, iter: 1." in log and "iter:       2," in log
    assert "removing" in resumed.stderr and not list(states.glob(".*.part"))
    assert torch.load(states / "2.state", map_location="cpu", weights_only=False)["iter"] == 2


def _resume_options(tmp_path: Path) -> dict:
    folder = tmp_path / "experiments" / NAME
    return {"name": NAME, "auto_resume": True, "rank": 0, "network_g": {},
            "path": {"resume_state": None, "models": str(folder / "models"), "training_states": str(folder / "states")}}


def test_auto_resume_takes_the_newest_readable_state_and_names_the_skipped_one(tmp_path, caplog):
    opt = _resume_options(tmp_path)
    states = Path(opt["path"]["training_states"])
    states.mkdir(parents=True)
    for it in (2, 10):
        torch.save({"iter": it, "epoch": 0, "optimizers": [], "schedulers": []}, states / f"{it}.state")
    (states / "12.state").write_bytes((states / "10.state").read_bytes()[:50])
    (states / "14.state").write_bytes(b"")
    logger = logging.getLogger("basicsr")        # BasicSR's root logger does not propagate once set up
    logger.addHandler(caplog.handler)
    try:
        state = load_resume_state(opt)
    finally:
        logger.removeHandler(caplog.handler)
    assert state["iter"] == 10 and opt["path"]["resume_state"] == str(states / "10.state")
    assert opt["path"]["pretrain_network_g"].endswith("net_g_10.pth")
    assert "12.state" in caplog.text and "14.state" in caplog.text

    for name in ("2.state", "10.state"):
        (states / name).unlink()
    assert load_resume_state(_resume_options(tmp_path)) is None       # nothing readable: a fresh start

    opt = dict(_resume_options(tmp_path), auto_resume=False)
    opt["path"]["resume_state"] = str(states / "12.state")
    with pytest.raises(RuntimeError, match="12.state cannot be read"):
        load_resume_state(opt)


def test_backend_is_nccl_with_cuda_gloo_without_and_the_variable_overrides(monkeypatch):
    monkeypatch.delenv(distributed.BACKEND_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.choose_backend() == "gloo"
    monkeypatch.setenv(distributed.BACKEND_ENV, "nccl")
    with pytest.raises(RuntimeError, match="SGPN_DIST_BACKEND=gloo"):
        distributed.choose_backend()
    monkeypatch.setenv(distributed.BACKEND_ENV, "glo")
    with pytest.raises(ValueError, match="'glo'"):
        distributed.choose_backend()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv(distributed.BACKEND_ENV, " Gloo ")
    assert distributed.choose_backend() == "gloo"
    monkeypatch.delenv(distributed.BACKEND_ENV)
    assert distributed.choose_backend() == "nccl"


def _fake_scontrol(folder: Path) -> None:
    script = folder / "scontrol"
    script.write_text('#!/bin/sh\n[ "$1 $2 $3" = "show hostnames node[07-08]" ] && printf "127.0.0.1\\nnode08\\n"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_slurm_variables_become_torchrun_variables(tmp_path, monkeypatch):
    _fake_scontrol(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    for key, value in dict(SLURM_NODELIST="node[07-08]", SLURM_NTASKS="8", SLURM_PROCID="5", SLURM_LOCALID="1").items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert distributed.slurm_environment() == {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "8",
                                               "RANK": "5", "LOCAL_RANK": "1"}
    assert distributed.slurm_environment(port=1234)["MASTER_PORT"] == "1234"


@pytest.mark.slow
def test_launcher_slurm_starts_a_gloo_process_group(tmp_path):
    """Two processes started as ``srun --ntasks 2`` would start them join one group through ``init_dist``."""
    import socket

    _fake_scontrol(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # distributed.py alone (torch only), not the whole plugin with BasicSR: two fast interpreters
    source = str(REPO / "basicsr_plugin" / "distributed.py")
    code = ("import importlib.util, torch, torch.distributed as dist; "
            f"spec = importlib.util.spec_from_file_location('distributed', {source!r}); "
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
            f"module.init_dist('slurm', backend='nccl', port={port}); t = torch.ones(1) * (dist.get_rank() + 1); "
            "dist.all_reduce(t); print(dist.get_backend(), dist.get_world_size(), int(t)); "
            "dist.destroy_process_group()")
    env = dict(_env(), PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}", SLURM_NODELIST="node[07-08]",
               SLURM_NTASKS="2")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=dict(env, SLURM_PROCID=str(r), SLURM_LOCALID=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert [out.split() for out, _ in outputs] == [["gloo", "2", "3"]] * 2


@pytest.mark.slow
def test_validation_and_ema_use_bare_modules_and_d3dfr_batchnorm_stays_frozen(faces_dir, tmp_path):
    from basicsr.data import build_dataset
    from torch.nn.parallel import DataParallel

    opt = _tiny_options(faces_dir, fine_tune_d3dfr=True)
    model = _single_process_model(opt, tmp_path)
    d3dfr = model.shape_prior.d3dfr
    assert not any(m.training for m in d3dfr.modules()) and all(p.requires_grad for p in d3dfr.parameters())
    stats = {k: v.clone() for k, v in d3dfr.state_dict().items() if "running_" in k}

    dataset = build_dataset(dict(opt["datasets"]["train"], phase="train"))
    model.feed_data({k: dataset[0][k][None] for k in ("lq", "gt", "landmarks", "crop_matrix")})
    weight = d3dfr.final_layers[0].weight.clone()      # (the heads start at zero: the backbone moves later)
    model.optimize_parameters(1)
    assert not torch.equal(weight, d3dfr.final_layers[0].weight)       # D3DFR trains...
    assert all(torch.equal(v, d3dfr.state_dict()[k]) for k, v in stats.items())   # ...with frozen statistics
    model.test()
    assert model.net_g.training and not any(m.training for m in d3dfr.modules())

    # num_gpu > 1 without --launcher: the generator is wrapped in DataParallel, its EMA copy is not
    model.opt["num_gpu"] = 2
    model.net_g = DataParallel(model.net_g)
    assert not isinstance(model.model_to_device(model.net_g_ema, trainable=False), DataParallel)
    model.model_ema(0.5)
    model.test()
    assert model.output.shape == model.gt.shape
