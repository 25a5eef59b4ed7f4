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

USAGE = "usage: basicsr {train,test} -opt OPTIONS.yml [BasicSR flags: --launcher, --auto_resume, --debug, --force_yml]"


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
        from basicsr.train import train_pipeline
        train_pipeline(root)
    else:
        from basicsr.test import test_pipeline
        test_pipeline(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
