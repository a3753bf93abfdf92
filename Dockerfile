# The gateway's image: the official Ray image of the Ray and Python versions the project pins (pyproject.toml:
# ray[serve]==2.60.0; Python 3.11), with the project installed. Every pod of the RayService runs it (Ray head,
# workers, metrics sidecar). Models are not baked in: replicas pull versions from the registry (S3) at start.
#
#   CPU: docker build -t REGISTRY/inference-gateway:0.1.0-cpu .
#   GPU: docker build --build-arg RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu \
#          --build-arg TORCH_INDEX=https://pypi.org/simple -t REGISTRY/inference-gateway:0.1.0-gpu .
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311
FROM ${RAY_IMAGE}

# torch first, from an index that has the wanted build (CPU wheels by default; PyPI's default torch is CUDA):
# asked for later by the project's dependencies, pip would pick a multi-GB CUDA build on the CPU image.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" torch==2.13.0

WORKDIR /home/ray/gateway
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users serve_app ./serve_app
COPY --chown=ray:users deployments ./deployments
COPY --chown=ray:users configs ./configs
# Editable, so the project root stays /home/ray/gateway: relative paths of the config (models/, .cache/) resolve
# there, and .cache is the volume the manifests mount for the model cache.
RUN pip install --no-cache-dir -e . && python -c "import deployments.k8s_builders, deployments.ingress"

ENV GATEWAY_CONFIG=/home/ray/gateway/configs/gateway.yaml \
    GATEWAY_MODELS_DIR=/home/ray/gateway/models \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
