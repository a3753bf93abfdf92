"""Every environment knob the gateway reads, in one place.

`GatewaySettings` is built once (from the process environment, prefix `GATEWAY_`) and applied to the YAML
config by `config.load_config`; no other module reads `os.environ` for gateway behaviour.
"""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class GatewaySettings(BaseSettings):
    """Environment overrides. Unset fields leave the YAML config's values alone."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    config: Path = Field(
        default=REPO_ROOT / "configs" / "gateway.yaml",
        description="Path of the gateway YAML config.",
    )
    models_dir: Path = Field(
        default=REPO_ROOT / "models",
        description="Folder that relative model sources in the config are resolved against.",
    )
    host: str | None = Field(default=None, description="Override server.host.")
    http_port: int | None = Field(default=None, description="Override server.http_port.")
    grpc_port: int | None = Field(default=None, description="Override server.grpc_port (0: no gRPC).")
    num_gpus: float | None = Field(
        default=None, description="Override every model's resources.num_gpus (0 forces CPU)."
    )
    registry_uri: str | None = Field(
        default=None, description="Override registry.uri (a local path, file://, s3://, hdfs:// or webhdfs://)."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token required by admin endpoints (load/unload, traffic); unset: open."
    )
    inference_token: SecretStr | None = Field(
        default=None,
        description="Bearer token required by inference and metadata calls (HTTP and gRPC); health stays open. "
        "Separate from the admin token; unset: open.",
    )
    metrics_port: int = Field(
        default=8080, description="Port of Ray's metrics exporter (gateway_* series appear as ray_gateway_*)."
    )
    sidecar_port: int = Field(default=9101, description="Port of the metrics sidecar `make run` starts; 0: none.")
    ray_address: str = Field(
        default="local",
        description="Ray address for `gateway run`; 'local' starts a fresh single-node Ray.",
    )
