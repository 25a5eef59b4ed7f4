"""The ``basicsr`` command: BasicSR's own train/test pipelines with the SGPN plugin registered.

    basicsr train -opt options/train_sgpn.yml [--auto_resume] [--debug] [--launcher pytorch]
    basicsr test  -opt options/test_sgpn.yml
    torchrun --nproc_per_node 4 -m basicsr_plugin train -opt options/train_sgpn.yml --launcher pytorch

Everything after the subcommand is passed to BasicSR unchanged; experiments/ and results/ are written
under the current directory. Distributed runs use NCCL with CUDA and gloo without
(``SGPN_DIST_BACKEND=gloo|nccl`` overrides; see ``basicsr_plugin.distributed``).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger("basicsr")

USAGE = "usage: basicsr {train,test} -opt OPTIONS.yml [BasicSR flags: --launcher, --auto_resume, --debug, --force_yml]"


def _remove_partial_writes(opt: dict) -> None:
    """Delete the temporary files of checkpoint writes a killed run left behind (``.<name>.<id>.part``)."""
    for key in ("models", "training_states"):
        for path in Path(opt["path"][key]).glob(".*.part"):
            logger.warning("--auto_resume: removing %s, left by a checkpoint write that did not finish", path)
            path.unlink()


def load_resume_state(opt: dict) -> dict | None:
    """BasicSR's resume-state lookup (``--auto_resume`` or ``path.resume_state``), loaded onto the CPU.

    ``--auto_resume`` takes the newest state that loads: a state left truncated by a killed run (before
    states were written atomically, or a full disk) is skipped with a warning naming it, and the
    temporary files of interrupted writes are removed. BasicSR 1.4.2 maps the state onto
    ``torch.cuda.current_device()``, which fails without CUDA; the optimizers move their state to their
    parameters' device when the model resumes.
    """
    import torch
    from basicsr.utils.misc import check_resume

    if opt["auto_resume"]:
        if opt["rank"] == 0:
            _remove_partial_writes(opt)
        folder = Path(opt["path"]["training_states"])
        states = sorted(folder.glob("*.state"), key=lambda p: int(p.stem), reverse=True) if folder.is_dir() else []
        for path in states:
            try:
                state = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as error:  # noqa: BLE001  (truncated zip, EOFError, unpickling errors...)
                if opt["rank"] == 0:
                    logger.warning("--auto_resume: skipping unreadable training state %s (%s: %s)",
                                   path, type(error).__name__, error)
                continue
            opt["path"]["resume_state"] = str(path)
            break
        else:
            return None
    elif opt["path"].get("resume_state"):
        path = opt["path"]["resume_state"]
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # noqa: BLE001
            raise RuntimeError(f"path.resume_state {path} cannot be read ({type(error).__name__}: {error}); "
                               "point it at another .state file or use --auto_resume") from error
    else:
        return None
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
    import basicsr.utils.options

    from basicsr_plugin.options_check import OptionsError, check_options_file

    if "-opt" in rest[:-1]:     # before BasicSR reads the file: its own KeyErrors name nothing
        try:
            check_options_file(rest[rest.index("-opt") + 1], is_train=command == "train")
        except (OptionsError, OSError) as error:
            print(f"basicsr: {error}", file=sys.stderr)
            return 2
    from torch.distributed import destroy_process_group

    from basicsr_plugin.distributed import init_dist, is_distributed

    basicsr.utils.options.init_dist = init_dist        # NCCL on GPUs, gloo on CPUs (see distributed.py)
    sys.argv = [f"basicsr {command}"] + rest          # BasicSR parses sys.argv itself
    root = os.getcwd()
    try:
        if command == "train":
            import basicsr.train

            basicsr.train.load_resume_state = load_resume_state
            basicsr.train.train_pipeline(root)
        else:
            from basicsr.test import test_pipeline
            test_pipeline(root)
    finally:
        if is_distributed():
            destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
