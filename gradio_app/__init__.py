"""SGPN web demo (Gradio), deployable as a Hugging Face Space: ``build_demo`` builds it, ``app.py`` runs it."""

from .config import DemoConfig
from .ui import build_demo

__all__ = ["DemoConfig", "build_demo"]
