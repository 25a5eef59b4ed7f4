"""SGPN networks, 3DMM shape prior, renderer, alignment maths and the restoration pipeline.

Sub-packages: ``nets`` (networks), ``face3d`` (3DMM, renderer, shape prior), ``pipeline`` (restoration),
``zoo`` (weights and checkpoints), ``eval`` (metrics, peers, benchmark); ``cli`` is the ``sgpn`` command.
The flat module names of earlier versions (``sgpn_arch.restorer``, ``sgpn_arch.metrics.fid``) still import:
:class:`_MovedModules` answers them with the moved module itself.
"""

import importlib
import sys
from importlib.machinery import ModuleSpec

__version__ = "0.1.0"

# flat module (or sub-package) of earlier versions -> the sub-package it lives in now
MOVED = {
    **dict.fromkeys(("arcface", "d3dfr", "decoder_init", "discriminator", "generator", "gpen", "model",
                     "stylegan2_ops"), "nets"),
    **dict.fromkeys(("bfm", "bfm_synthetic", "renderer", "shape_prior"), "face3d"),
    **dict.fromkeys(("align", "bg_upsampler", "compilation", "cpu_memory", "examples", "image_io",
                     "official_pipeline", "output_folder", "restorer"), "pipeline"),
    **dict.fromkeys(("bundle", "checkpoint_layouts", "checkpoints", "hub_mirror", "weights", "weights_cli"), "zoo"),
    **dict.fromkeys(("bench", "degradation", "metrics", "peers"), "eval"),
}


class _MovedModules:
    """Import hook: ``<package>.<old>[.rest]`` is ``<package>.<MOVED[old]>.<old>[.rest]``, the same module object.

    The loader imports the new name and puts that module into ``sys.modules`` under the old one, where the import
    system takes the module it returns from (the stand-in it created is dropped): nothing runs twice. ``package``
    is this package's own ``__name__``, so a copy loaded under another name (ComfyUI's ``<pack>.sgpn_arch``) maps
    its own names and never another copy's.
    """

    def __init__(self, package: str):
        self.package = package

    def find_spec(self, fullname, path=None, target=None):
        old = fullname.removeprefix(f"{self.package}.")
        if old == fullname or old.split(".")[0] not in MOVED:
            return None
        return ModuleSpec(fullname, self)

    def create_module(self, spec):
        return None   # the default stand-in, replaced in exec_module

    def exec_module(self, module):
        old = module.__name__.removeprefix(f"{self.package}.")
        sys.modules[module.__name__] = importlib.import_module(f"{self.package}.{MOVED[old.split('.')[0]]}.{old}")


# first in line: the moved sub-package's own __path__ would find its files under the old names (run twice);
# once per package name (a package imported again defines a new class, hence the comparison by name)
if not any(type(finder).__name__ == "_MovedModules" and finder.package == __name__ for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules(__name__))
