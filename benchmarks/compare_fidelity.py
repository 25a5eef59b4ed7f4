"""How far ``fidelity="default"`` is from ``fidelity="official"`` (the official demo's steps), in grey levels.

Two networks: ``identity`` (the restored crop is the LQ crop: only the pre- and post-processing
differ, whatever the weights) and generated SGPN weights (``--preset tiny`` or ``official``, random,
with a synthetic BFM: the numbers show how the generator spreads input differences, not real faces).
Printed per photo: mean / p99 / max of |default − official| over the whole photo and inside the faces'
paste regions, and, for the identity network, how far each mode moves the photo from the input.

    python benchmarks/compare_fidelity.py --photos sgpn_0525.jpg codeformer_01.jpg --preset tiny
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.scratch import scratch_dir  # noqa: E402


def stats(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> str:
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    diff = diff[where] if where is not None else diff
    return f"mean {diff.mean():6.2f}  p99 {np.percentile(diff, 99):6.1f}  max {diff.max():5.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", nargs="+", default=["sgpn_0525.jpg"], help="names in shared/data/faces/real_lq_whole")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "official", "none"],
                        help="generated SGPN weights to compare with too (none: identity network only)")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("SGPN_SHARED_DIR", REPO.parent / "shared")))
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from sgpn_arch.face3d.bfm_synthetic import write_synthetic_bfm
    from sgpn_arch.nets.model import IdentitySGPN, build_sgpn
    from sgpn_arch.pipeline.image_io import read_image
    from sgpn_arch.pipeline.restorer import FaceRestorer
    from sgpn_arch.zoo.checkpoints import write_random_checkpoints

    work = scratch_dir("sgpn_fidelity_")
    detector_dir = args.shared / "weights" / "retinaface"
    networks = {"identity": IdentitySGPN()}
    if args.preset != "none":
        weights = write_random_checkpoints(work / "weights", preset=args.preset)
        networks[f"random {args.preset}"] = build_sgpn(weights["sgpn"], weights["d3dfr"],
                                                       write_synthetic_bfm(work / "bfm"), renderer_backend="torch")
    for name in args.photos:
        image = read_image(args.shared / "data" / "faces" / "real_lq_whole" / name)[..., :3]
        for label, model in networks.items():
            results = {}
            for fidelity in ("default", "official"):
                restorer = FaceRestorer(model, device="cpu", upscale=1, detector="retinaface_mobile0.25",
                                        detector_rootpath=detector_dir, fidelity=fidelity)
                results[fidelity] = restorer.restore(image)
            default, official = results["default"], results["official"]
            faces = (default.face_mask > 0.01) | (official.face_mask > 0.01)
            print(f"{name} ({len(default.restored_faces)} faces, {image.shape[1]}x{image.shape[0]}), {label} network")
            print(f"  default vs official, whole photo : {stats(default.restored_image, official.restored_image)}")
            print(f"  default vs official, face regions: "
                  f"{stats(default.restored_image, official.restored_image, faces)}")
            if label == "identity":
                for fidelity, result in results.items():
                    print(f"  {fidelity:8s} vs input, face regions   : {stats(result.restored_image, image, faces)}")


if __name__ == "__main__":
    main()
