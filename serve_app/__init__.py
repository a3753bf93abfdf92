"""Multi-model inference gateway on Ray Serve.

Pure-Python pieces (config, errors, dataplane, processing) import no Ray so unit tests run them directly;
Ray-specific code lives in `deployments/` and `serve_app.app`.
"""

__version__ = "0.1.0"
