"""Model runtimes: load a checkpoint folder and answer a flat batch of texts. torch + transformers, no Ray,
so they run in unit tests and on machines without Ray; `deployments/` wraps them for Ray Serve."""
