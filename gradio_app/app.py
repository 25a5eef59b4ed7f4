"""Entry point of the SGPN web demo / Hugging Face Space.

Run with ``python app.py`` (or ``python -m gradio_app.app``) or with Gradio's reload tooling
(``gradio app.py``, which runs this file as ``__main__`` too). Settings come from ``SGPN_*`` environment
variables (see README.md); host and port from Gradio's own ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``.
The server starts at once; the model loads in the background and the page shows its state.
"""

import logging

from gradio_app import DemoConfig, build_demo

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

config = DemoConfig.from_env()
demo = build_demo(config=config)

if __name__ == "__main__":
    demo.launch(**config.launch_options())
