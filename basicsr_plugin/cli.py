"""The ``basicsr`` command: BasicSR's own train/test pipelines with the SGPN plugin registered.

    basicsr train -opt options/train_sgpn.yml [--auto_resume] [--debug] [--launcher pytorch]
    basicsr test  -opt options/test_sgpn.yml
    torchrun --nproc_per_node 4 -m basicsr_plugin train -opt options/train_sgpn.yml --launcher pytorch

Everything after the subcommand is passed to BasicSR unchanged; experiments/ and results/ are written
under the current directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

USAGE = "usage: basicsr {train,test} -opt OPTIONS.yml [BasicSR flags: --launcher, --auto_resume, --debug, --force_yml]"


def load_resume_state_on_cpu(opt: dict) -> dict | None:
    """BasicSR's resume-state lookup (``--auto_resume`` or ``path.resume_state``), loaded onto the CPU.

    BasicSR 1.4.2 maps the state onto ``torch.cuda.current_device()``, which fails without CUDA; the
    model moves the optimizer state to its own device when it resumes.
    """
    import torch
    from basicsr.utils.misc import check_resume

    path = None if opt["auto_resume"] else opt["path"].get("resume_state")
    if opt["auto_resume"]:
        folder = Path("experiments") / opt["name"] / "training_states"
        states = sorted(folder.glob("*.state"), key=lambda p: int(p.stem)) if folder.is_dir() else []
        if states:
            path = opt["path"]["resume_state"] = str(states[-1])
    if not path:
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    check_resume(opt, state["iter"])
    return state


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\n" + USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in ("train", "test"):
        print(f"basicsr: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        return 2
    import basicsr_plugin  # noqa: F401  (registers everything)

    sys.argv = [f"basicsr {command}"] + rest          # BasicSR parses sys.argv itself
    root = os.getcwd()
    if command == "train":
        import basicsr.train
        import torch

        if not torch.cuda.is_available():
            basicsr.train.load_resume_state = load_resume_state_on_cpu
        basicsr.train.train_pipeline(root)
    else:
        from basicsr.test import test_pipeline
        test_pipeline(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
