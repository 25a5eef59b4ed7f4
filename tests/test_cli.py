"""End-to-end tests of the ``sgpn`` command on a folder mixing good, corrupt and face-less images."""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from sgpn_arch.cli import main

pytestmark = pytest.mark.usefixtures("info_logs")


@pytest.fixture()
def info_logs(caplog):
    caplog.set_level(logging.INFO)


@pytest.fixture()
def mixed_folder(tmp_path: Path, faces_dir: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(faces_dir / "real_lq_whole" / "sgpn_0022.jpg", folder / "portrait.jpg")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    cv2.imwrite(str(folder / "wall.png"), np.full((240, 320, 3), 128, np.uint8))  # no face anywhere
    cv2.imwrite(str(folder / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    (folder / "README.md").write_text("# photos of the family\n")
    (folder / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    return folder


def _restore_args(tiny_weights, bfm_dir, retinaface_dir, *extra) -> list[str]:
    return ["restore", "--generator", str(tiny_weights["sgpn"]), "--d3dfr", str(tiny_weights["d3dfr"]),
            "--bfm", str(bfm_dir), "--detector", "retinaface_mobile0.25", "--detector-dir", str(retinaface_dir),
            "--device", "cpu", "--offline", *extra]


@pytest.mark.slow
def test_folder_with_bad_files_restores_the_good_one_and_fails(mixed_folder, tmp_path, tiny_weights, bfm_dir,
                                                               retinaface_dir, capsys, caplog):
    out = tmp_path / "out"
    code = main(_restore_args(tiny_weights, bfm_dir, retinaface_dir, "-i", str(mixed_folder), "-o", str(out),
                              "--upscale", "1"))
    captured = capsys.readouterr()
    assert code == 1
    assert "restored 1 of 4" in captured.out
    failed = [line for line in captured.err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 3
    assert any("corrupt.jpg" in line for line in failed) and any("wall.png" in line and "face" in line.lower()
                                                                for line in failed)
    # issue 18 item 6: what the other files are, said in words; non-images skipped with a note, not failed
    assert any("dot.png" in line and "1×1 pixels" in line for line in failed)
    assert "skipped README.md: a text file" in captured.err
    assert "skipped clip.mp4: a video" in captured.err and "ffmpeg" in captured.err
    assert "portrait.jpg: 1 face(s)" in caplog.text           # a per-image line in the log

    restored = out / "restored_imgs" / "portrait.jpg"
    assert cv2.imread(str(restored)).shape == (505, 355, 3)
    for sub in ("cropped_faces", "restored_faces", "renders", "cmp"):
        faces = sorted((out / sub).iterdir())
        assert faces and all(p.name.startswith("portrait_") for p in faces), sub
    assert cv2.imread(str(out / "cmp" / "portrait_00.png")).shape == (512, 3 * 512, 3)
    written = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in written if p.suffix == ".part" or "corrupt" in p.name or "wall" in p.name]
    assert not [p for p in written if "dot" in p.name or "README" in p.name or "clip" in p.name]


def test_aligned_crops_and_setup_errors(tmp_path, faces_dir, tiny_weights, bfm_dir, retinaface_dir, capsys,
                                        monkeypatch):
    kept = []
    monkeypatch.setattr("sgpn_arch.pipeline.cpu_memory.keep_freed_memory", lambda: kept.append(True))
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
    assert "arcface" in listing and str(tmp_path / "arcface_resnet18.pth") in listing and "missing" in listing

    assert main(["weights", "verify", "arcface"]) == 0
    assert "arcface" in capsys.readouterr().out
    assert main(["weights", "verify", "sgpn"]) == 1
    assert "SGPN_WEIGHTS_SGPN" in capsys.readouterr().err
    assert main(["weights", "verify", "nonsense"]) == 2


def _no_models(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("models were loaded although an option or path is wrong")

    monkeypatch.setattr("sgpn_arch.cli.build_restorer", refuse)


@pytest.mark.parametrize("extra, expected", [
    (["--ext", "xyz"], "--ext xyz"),
    (["--device", "gpu0"], "unknown device"),
    (["--device", "cuda:7"], "not available"),
    (["--visibility", "2"], "--visibility must be from 0 to 1"),
    (["--min-face-size", "-5"], "--min-face-size must be 0 or more"),
    (["--upscale", "0"], "--upscale"),
    (["--detection-size", "10"], "--detection-size"),
    (["--suffix", "a/b"], "--suffix"),
    (["--detector", "yolo"], "invalid choice"),
    (["-o", "FILE"], "is a file"),
    (["-o", "FILE/sub"], "is a file"),
    (["-i", "MISSING"], "does not exist"),
    (["-i", "VIDEO"], "is a video"),
])
def test_bad_options_fail_in_one_line_before_models_load(tmp_path, faces_dir, monkeypatch, capsys, extra, expected):
    """Issue 18 item 4/6: wrong options used to surface after the models loaded, as tracebacks, per-file
    failures or exit code 1; each is now one line, exit code 2, before any model loads or any file is written."""
    _no_models(monkeypatch)
    (tmp_path / "FILE").write_text("not a folder")
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    paths = {"FILE": str(tmp_path / "FILE"), "FILE/sub": str(tmp_path / "FILE" / "sub"),
             "MISSING": str(tmp_path / "missing.jpg"), "VIDEO": str(tmp_path / "clip.mp4")}
    extra = [paths.get(x, x) for x in extra]
    out = tmp_path / "out"
    args = ["restore", "-i", str(faces_dir / "real_lq_whole" / "sgpn_0022.jpg"), "-o", str(out)]
    assert _exit_code(args + extra) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err
    assert "batch_size" not in err
    assert not out.exists()


def _exit_code(argv: list[str]) -> int:
    """``main``'s return value, or the code of the SystemExit argparse raises."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def test_foreign_and_text_checkpoints_are_named(tmp_path, tiny_weights, bfm_dir, retinaface_dir, faces_dir, capsys):
    """Issue 18 item 6: a GFPGAN checkpoint as --generator said 'max() arg is an empty sequence', a text file '101'."""
    import torch

    tensor = torch.zeros(1)
    gfpgan = {"params_ema": {"conv_body_first.weight": tensor, "conv_body_down.0.conv1.weight": tensor,
                             "final_linear.weight": tensor, "stylegan_decoder.constant_input.weight": tensor,
                             "condition_scale.0.0.weight": tensor, "toRGB.0.weight": tensor}}
    torch.save(gfpgan, tmp_path / "GFPGANv1.4.pth")
    (tmp_path / "sgpn.pth").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 9\n")
    crop = faces_dir / "real_lq_cropped" / "sgpn_test.jpg"
    for weights, expected in ((tmp_path / "GFPGANv1.4.pth", "GFPGAN v1.2/v1.3/v1.4"),
                              (tmp_path / "sgpn.pth", "Git LFS pointer")):
        args = _restore_args(tiny_weights, bfm_dir, retinaface_dir, "-i", str(crop), "-o", str(tmp_path / "out"),
                             "--aligned")
        args[args.index("--generator") + 1] = str(weights)
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and str(weights) in err and len(err.splitlines()) == 1, err
        assert "max()" not in err


@pytest.fixture()
def three_crops(tmp_path, faces_dir) -> Path:
    folder = tmp_path / "crops"
    folder.mkdir()
    for name in ("codeformer_0342.png", "codeformer_0478.png", "gfpgan_Adele_crop.png"):
        shutil.copy(faces_dir / "real_lq_cropped" / name, folder / name)
    return folder


def _files(out: Path) -> dict[str, float]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_ctrl_c_leaves_complete_images_only_and_skip_existing_resumes(three_crops, tmp_path, tiny_weights, bfm_dir,
                                                                     retinaface_dir, monkeypatch, capsys):
    """Issue 18 item 5: Ctrl-C gave a traceback and an image with only some of its files."""
    import sgpn_arch.pipeline.output_folder as output_folder

    real_write, calls = output_folder.write_image, []

    def write_then_interrupt(path, image):
        calls.append(path)
        if len(calls) == 7:            # the 2nd file of the 2nd image (5 files per aligned crop)
            raise KeyboardInterrupt
        return real_write(path, image)

    monkeypatch.setattr(output_folder, "write_image", write_then_interrupt)
    out = tmp_path / "out"
    args = _restore_args(tiny_weights, bfm_dir, retinaface_dir, "-i", str(three_crops), "-o", str(out), "--aligned")
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted after 1 of 3 image(s)" in err and "Traceback" not in err
    first = _files(out)
    faces = sorted(f"{sub}/codeformer_0342_00.png" for sub in ("cropped_faces", "renders", "cmp", "restored_faces"))
    assert sorted(first) == faces + ["restored_imgs/codeformer_0342.png"]

    monkeypatch.setattr(output_folder, "write_image", real_write)
    assert main(args + ["--skip-existing"]) == 0
    assert "restored 2 of 3 image(s)" in capsys.readouterr().out
    again = _files(out)
    assert len(again) == 15 and all(again[name] == first[name] for name in first)   # the first one kept as it was


@pytest.mark.slow
def test_same_stem_inputs_keep_their_own_outputs_and_write_errors_are_per_image(tmp_path, faces_dir, tiny_weights,
                                                                                 bfm_dir, retinaface_dir, capsys):
    """Issue 17: a.jpg and a.png wrote the same cropped_faces/a_00.png (one input's faces lost). Issue 18 item 4:
    a write error must fail that image only, leaving none of its files."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(faces_dir / "real_lq_cropped" / "sgpn_test.jpg", folder / "a.jpg")
    shutil.copy(faces_dir / "real_lq_cropped" / "codeformer_0342.png", folder / "a.png")
    shutil.copy(faces_dir / "real_lq_cropped" / "codeformer_0478.png", folder / "b.png")
    out = tmp_path / "out"
    (out / "restored_imgs" / "b_x.png").mkdir(parents=True)   # b's whole image cannot be written
    code = main(_restore_args(tiny_weights, bfm_dir, retinaface_dir, "-i", str(folder), "-o", str(out), "--aligned",
                              "--suffix", "x"))
    captured = capsys.readouterr()
    assert code == 1 and "restored 2 of 3" in captured.out
    assert [line for line in captured.err.splitlines() if line.startswith("FAILED")][0].startswith(
        f"FAILED {folder / 'b.png'}")
    for sub, names in (("cropped_faces", ["a_jpg_00.png", "a_png_00.png"]), ("cmp", ["a_jpg_00.png", "a_png_00.png"]),
                       ("restored_faces", ["a_jpg_00_x.png", "a_png_00_x.png"]),
                       ("restored_imgs", ["a_jpg_x.jpg", "a_png_x.png", "b_x.png"])):
        assert sorted(p.name for p in (out / sub).iterdir()) == names, sub
    crops = [cv2.imread(str(out / "cropped_faces" / name)) for name in ("a_jpg_00.png", "a_png_00.png")]
    assert not np.array_equal(*crops)                        # two different faces, both kept
    assert not list(out.rglob("*.part"))


def test_make_pairs_and_restore_outputs_are_readable_by_others(tmp_path, faces_dir):
    """Issue 17: results were written 0600 (tempfile.mkstemp); sgpn make-pairs goes through the same writer."""
    hq = tmp_path / "hq_in"
    hq.mkdir()
    shutil.copy(faces_dir / "hq_aligned" / "gpen_00002.png", hq / "face.png")
    old = os.umask(0o022)
    try:
        assert main(["make-pairs", "--hq", str(hq), "-o", str(tmp_path / "pairs"), "--size", "128"]) == 0
    finally:
        os.umask(old)
    written = [p for p in (tmp_path / "pairs").rglob("*") if p.is_file()]
    assert len(written) == 2 and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in written)
