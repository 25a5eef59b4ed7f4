"""Register the SGPN networks in BasicSR's ARCH_REGISTRY (the code lives in ``sgpn_arch``)."""

from . import compat  # noqa: F401  (before basicsr)
from basicsr.utils.registry import ARCH_REGISTRY  # noqa: E402

from sgpn_arch.nets.arcface import ArcFaceResNet18  # noqa: E402
from sgpn_arch.nets.d3dfr import ReconNet  # noqa: E402
from sgpn_arch.nets.discriminator import SGPNDiscriminator  # noqa: E402
from sgpn_arch.nets.generator import SGPNGenerator  # noqa: E402

for _arch in (SGPNGenerator, SGPNDiscriminator, ReconNet, ArcFaceResNet18):
    ARCH_REGISTRY.register(_arch)
