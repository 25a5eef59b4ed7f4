"""BasicSR plugin: importing it registers SGPN's archs, dataset, losses, model and metrics."""

from . import compat  # noqa: F401  (must run before the first basicsr import)
from . import archs, data, losses, metrics, models  # noqa: F401,E402
