"""Make ``import basicsr`` (1.4.2) work with torchvision ≥ 0.17.

BasicSR imports ``torchvision.transforms.functional_tensor``, which newer torchvision removed (its
functions live in ``torchvision.transforms.functional``). This module provides that name once, before
the first ``basicsr`` import; everything in the project that imports basicsr imports this first.
"""

import sys

import torchvision.transforms.functional as _functional

sys.modules.setdefault("torchvision.transforms.functional_tensor", _functional)
