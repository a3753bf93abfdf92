"""Multi-model inference gateway on Ray Serve.

Pure-Python pieces (config, errors, dataplane, processing) import no Ray so unit tests run them directly;
Ray-specific code lives in `deployments/`; only the entry points (`cli`, `bench`) import it.
"""

__version__ = "0.1.0"
