"""Entry point of the SGPN web demo / Hugging Face Space.

Run with ``python app.py`` (or ``python -m gradio_app.app``) or with Gradio's reload tooling
(``gradio app.py``, which picks up ``demo``). Settings come from ``SGPN_*`` environment variables
(see README.md); host and port from Gradio's own ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``.
"""

import logging

from gradio_app.ui import build_demo

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

demo = build_demo()

if __name__ == "__main__":
    demo.launch()
