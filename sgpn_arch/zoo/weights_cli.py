"""``sgpn weights``: list, download, verify, import the official release bundle, export a Hub mirror."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .weights import (BFM_FILES, MODEL_ZOO, RESTORE_WEIGHTS, WeightsError, hf_repo, locate_bfm_folder,
                      locate_weights, resolve_weights, sha256sum, verify, weights_dir)


def add_weights_parser(sub) -> None:
    """The ``weights`` subcommand and its actions."""
    weights = sub.add_parser("weights", help="get, list, verify, import or export weights")
    actions = weights.add_subparsers(dest="action", required=True)
    for action, text in (("list", "where each file is (or that it is missing)"),
                         ("download", "fetch what is missing (no names: what `sgpn restore` needs, via the official "
                                      "release bundle)"),
                         ("verify", "check the files that are present (sha256, checkpoint layout, BFM files)")):
        parser = actions.add_parser(action, help=text, description=text)
        parser.add_argument("names", nargs="*", help="weights to act on (see `sgpn weights list`)")
    imported = actions.add_parser("import", help="install a release bundle downloaded by hand (archive or folder)")
    imported.add_argument("path", type=Path, help="the bundle: zip/tar archive, a checkpoints/ folder, or one file")
    export = actions.add_parser("export", help="write .safetensors copies and a model card for a Hub mirror")
    export.add_argument("--safetensors", type=Path, required=True, metavar="DIR", help="output folder")


def run_weights(args: argparse.Namespace) -> int:
    """Run ``sgpn weights <action>``; returns the exit code."""
    names = getattr(args, "names", [])
    if args.action in ("list", "verify") and not names or any(name not in MODEL_ZOO for name in names):
        # the metric, peer and background networks register in the zoo on import (heavy: only when asked for)
        from ..eval import metrics, peers  # noqa: F401
        from ..pipeline import bg_upsampler  # noqa: F401
    if args.action == "import":
        from .bundle import install_bundle

        print(install_bundle(args.path).summary())
        return 0
    if args.action == "export":
        from .hub_mirror import export_mirror

        written = export_mirror(args.safetensors)
        print("\n".join(f"wrote {path}" for path in written))
        return 0
    unknown = [name for name in args.names if name not in MODEL_ZOO]
    if unknown:
        print(f"sgpn: unknown weights {', '.join(unknown)}; known: {', '.join(sorted(MODEL_ZOO))}", file=sys.stderr)
        return 2
    if args.action == "list":
        return _list(args.names or sorted(MODEL_ZOO))
    if args.action == "verify":
        return _verify(args.names or [name for name in sorted(MODEL_ZOO) if _present(name)])
    return _download(args.names or list(RESTORE_WEIGHTS), bfm=not args.names)


def _present(name: str) -> bool:
    try:
        return locate_weights(name) is not None
    except WeightsError:
        return True       # present but wrong: verify reports it


def _list(names: list[str]) -> int:
    from .bundle import read_manifest

    print(f"weights folder: {weights_dir()} (SGPN_WEIGHTS_DIR)" + (f"; Hub mirror: {hf_repo()}" if hf_repo() else ""))
    manifest = read_manifest()
    if manifest:
        print(f"release bundle installed from {manifest['source']} on {manifest['installed_at']}")
    for name in names:
        spec = MODEL_ZOO[name]
        try:
            found = locate_weights(name)
            where = f"{found.path}  ({found.origin})" if found else "missing"
        except WeightsError as err:
            where = f"ERROR {err}"
        print(f"{name:24s} {spec.description}\n{'':24s} {where}")
    bfm = locate_bfm_folder()
    print(f"{'bfm':24s} Basel Face Model folder ({', '.join(BFM_FILES)})\n{'':24s} "
          + (f"{bfm.path}  ({bfm.origin})" if bfm else "missing (SGPN_BFM_DIR, or the release bundle)"))
    return 0


def _verify(names: list[str]) -> int:
    from .bundle import recognise

    status = 0
    for name in names:
        spec = MODEL_ZOO[name]
        try:
            found = locate_weights(name)
            if found is None:
                resolve_weights(name, allow_download=False)    # raises: where it was looked for, how to provide it
            verify(spec, found.path)
            detail = "sha256 matches" if spec.sha256 else "no reference sha256"
            if spec.in_bundle:
                member = recognise(found.path)
                if member.role != name:
                    raise WeightsError(f"{found.path} is {member.what}, not the {spec.description}")
                detail += ", layout OK"
            print(f"{name:24s} OK    {found.path}  sha256 {sha256sum(found.path)} ({detail})")
        except WeightsError as err:
            print(f"{name:24s} ERROR {err}", file=sys.stderr)
            status = 1
    bfm = locate_bfm_folder()
    if bfm is not None:
        roles = {recognise(bfm.path / f).role if (bfm.path / f).is_file() else None for f in BFM_FILES}
        ok = roles == {"bfm_model_info", "bfm_landmarks"}
        print(f"{'bfm':24s} {'OK   ' if ok else 'ERROR'} {bfm.path}" + ("" if ok else f": expected {', '.join(BFM_FILES)}"),
              file=sys.stdout if ok else sys.stderr)
        status |= 0 if ok else 1
    return status


def _download(names: list[str], bfm: bool) -> int:
    """Fetch what is missing; the SGPN files (and the BFM) come in one bundle download."""
    from .bundle import download_bundle

    missing = [name for name in names if not _present(name)]
    bundled = [name for name in missing if MODEL_ZOO[name].in_bundle and not hf_repo()]
    if bundled or (bfm and locate_bfm_folder() is None):
        print(download_bundle().summary())
    status = 0
    for name in names:
        try:
            path = resolve_weights(name)
            print(f"{name:24s} OK  {path}  sha256 {sha256sum(path)}")
        except WeightsError as err:
            print(f"{name:24s} ERROR {err}", file=sys.stderr)
            status = 1
    return status
