"""End-to-end tests of the ``sgpn`` command on a folder mixing good, corrupt and face-less images."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from sgpn_arch.cli import main


@pytest.fixture()
def mixed_folder(tmp_path: Path, faces_dir: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(faces_dir / "real_lq_whole" / "sgpn_0022.jpg", folder / "portrait.jpg")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    cv2.imwrite(str(folder / "wall.png"), np.full((240, 320, 3), 128, np.uint8))  # no face anywhere
    return folder


def _restore_args(tiny_weights, bfm_dir, retinaface_dir, *extra) -> list[str]:
    return ["restore", "--generator", str(tiny_weights["sgpn"]), "--d3dfr", str(tiny_weights["d3dfr"]),
            "--bfm", str(bfm_dir), "--detector", "retinaface_mobile0.25", "--detector-dir", str(retinaface_dir),
            "--device", "cpu", "--offline", *extra]


@pytest.mark.slow
def test_folder_with_bad_files_restores_the_good_one_and_fails(mixed_folder, tmp_path, tiny_weights, bfm_dir,
                                                               retinaface_dir, capsys):
    out = tmp_path / "out"
    code = main(_restore_args(tiny_weights, bfm_dir, retinaface_dir, "-i", str(mixed_folder), "-o", str(out),
                              "--upscale", "1"))
    captured = capsys.readouterr()
    assert code == 1
    assert "restored 1 of 3" in captured.out
    failed = [line for line in captured.err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2
    assert any("corrupt.jpg" in line for line in failed) and any("wall.png" in line and "face" in line.lower()
                                                                for line in failed)

    restored = out / "restored_imgs" / "portrait.jpg"
    assert cv2.imread(str(restored)).shape == (505, 355, 3)
    for sub in ("cropped_faces", "restored_faces", "renders", "cmp"):
        faces = sorted((out / sub).iterdir())
        assert faces and all(p.name.startswith("portrait_") for p in faces), sub
    assert cv2.imread(str(out / "cmp" / "portrait_00.png")).shape == (512, 3 * 512, 3)
    written = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in written if p.suffix == ".part" or "corrupt" in p.name or "wall" in p.name]


def test_aligned_crops_and_setup_errors(tmp_path, faces_dir, tiny_weights, bfm_dir, retinaface_dir, capsys,
                                        monkeypatch):
    kept = []
    monkeypatch.setattr("sgpn_arch.cpu_memory.keep_freed_memory", lambda: kept.append(True))
    crop = sorted((faces_dir / "real_lq_cropped").iterdir())[0]
    out = tmp_path / "out"
    code = main(_restore_args(tiny_weights, bfm_dir, retinaface_dir, "-i", str(crop), "-o", str(out), "--aligned"))
    assert code == 0
    assert cv2.imread(str(out / "restored_faces" / f"{crop.stem}_00.png")).shape == (512, 512, 3)
    assert kept == []   # the allocator is left alone unless asked ...
    code = main(_restore_args(tiny_weights, bfm_dir, retinaface_dir, "-i", str(crop), "-o", str(tmp_path / "out1"),
                              "--aligned", "--keep-memory"))
    assert code == 0 and kept == [True]   # ... to keep freed memory for the next face

    # a missing BFM folder is a set-up error: one line, exit code 2, nothing written
    out2 = tmp_path / "out2"
    code = main(_restore_args(tiny_weights, tmp_path / "no_bfm", retinaface_dir, "-i", str(crop), "-o", str(out2),
                              "--aligned"))
    err = capsys.readouterr().err
    assert code == 2 and "BFM" in err and "no_bfm" in err
    assert not out2.exists()


def test_weights_list_and_verify_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SGPN_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "arcface_resnet18.pth").write_bytes(b"some bytes")
    assert main(["weights", "list"]) == 0
    listing = capsys.readouterr().out
    assert "arcface" in listing and "present" in listing and "sgpn.pth" in listing and "missing" in listing

    assert main(["weights", "verify", "arcface"]) == 0
    assert "arcface" in capsys.readouterr().out
    assert main(["weights", "verify", "sgpn"]) == 1
    assert "SGPN_WEIGHTS_SGPN" in capsys.readouterr().err
    assert main(["weights", "verify", "nonsense"]) == 2
