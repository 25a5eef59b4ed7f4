"""Prepare a Hugging Face Hub mirror of the SGPN weights: ``.safetensors`` copies and a model card.

Nothing is uploaded: the folder is ready for ``huggingface-cli upload``. Users of the mirror set
``SGPN_HF_REPO=<owner>/<name>``. The BFM is never exported (its licence forbids redistribution).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..pipeline.image_io import write_bytes_atomic
from .bundle import OFFICIAL_BUNDLE_PAGE
from .checkpoint_layouts import identify_layout
from .checkpoints import load_state_dict_file, save_state_dict
from .weights import MODEL_ZOO, WeightsError, resolve_weights, sha256sum

MIRRORED = ("sgpn", "d3dfr")
OFFICIAL_REPOSITORY = "https://github.com/TencentYoutuResearch/FaceRestoration-sgpn"

CARD = """---
license: other
license_name: sgpn-academic-research
tags:
- face-restoration
- sgpn
---
# SGPN weights (safetensors)

Weights of SGPN — "Blind Face Restoration via Integrating Face Shape and Generative Priors" (Zhu et al., CVPR 2022),
converted to `.safetensors` from the official release bundle without changing any tensor.

- Source: the official release bundle ({bundle_page}), linked from {repository}.
- Licence: the SGPN weights are released by Tencent for **academic research only**; the same terms apply to these
  copies. The Basel Face Model files of the bundle are not included (they cannot be redistributed).

| file | what | sha256 | sha256 of the source file |
| --- | --- | --- | --- |
{rows}

Use with the `sgpn-restore` package: `SGPN_HF_REPO=<this repository> sgpn weights download`, then give the BFM
folder with `sgpn weights import` of the official bundle or `SGPN_BFM_DIR`.
"""


def export_mirror(out_dir: str | os.PathLike) -> list[Path]:
    """Write ``<hf_filename>`` safetensors copies of the installed SGPN weights and ``README.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    rows, written = [], []
    for name in MIRRORED:
        spec = MODEL_ZOO[name]
        source = resolve_weights(name, allow_download=False)
        state = load_state_dict_file(source)
        layout = identify_layout(state)
        if layout is None or layout.sgpn_role != name:
            found = layout.description if layout else "an unrecognised network"
            raise WeightsError(f"{source} holds {found}, not the {spec.description}: nothing exported")
        target = save_state_dict(state, out_dir / spec.hf_filename)
        written.append(target)
        rows.append(f"| `{target.name}` | {spec.description} | `{sha256sum(target)}` | `{sha256sum(source)}` |")
    card = CARD.format(bundle_page=OFFICIAL_BUNDLE_PAGE, repository=OFFICIAL_REPOSITORY, rows="\n".join(rows))
    return written + [write_bytes_atomic(out_dir / "README.md", card.encode())]
