"""Render the generated parts of the Kubernetes manifests (`make k8s`; `--check` fails when a copy is stale).

    .venv/bin/python -m serve_app.ops.k8s_render [--check]

- `k8s/base/serve-config.yaml` and `k8s/overlays/gpu/serve-config.yaml`: RayService patches whose `serveConfigV2`
  is built from `configs/gateway.yaml` (what `make run` serves) merged with the folder's `gateway-overrides.yaml`
  (cluster sizing: replicas, autoscaling, what `num_gpus: auto` means there). Validated by pydantic (ours); the
  tests check it against Ray's own `ServeDeploySchema` (this module imports no Ray).
- `k8s/monitoring/prometheus-rule.yaml`: the PrometheusRule carrying `k8s/monitoring/alert-rules.yaml`.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import sys
from pathlib import Path

import yaml

from serve_app.config import parse_config
from serve_app.config.settings import REPO_ROOT, GatewaySettings
from serve_app.plan import BUILD_GATEWAY, BUILD_VERSION, GATEWAY_APP, declared_versions, replica_options
from serve_app.protocols.grpc_stubs import GRPC_SERVICER

RAYSERVICE = "inference-gateway"
GATEWAY_CONFIG = Path("configs/gateway.yaml")
# folder holding gateway-overrides.yaml -> the serve-config.yaml written there
SERVE_CONFIG_DIRS = [Path("k8s/base"), Path("k8s/overlays/gpu")]
ALERT_RULES = Path("k8s/monitoring/alert-rules.yaml")
PROMETHEUS_RULE = Path("k8s/monitoring/prometheus-rule.yaml")


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (serveConfigV2, PromQL) as `|` blocks, so the manifests stay readable and diffable;
    no anchors: each application's args are written out in full."""

    def ignore_aliases(self, data) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(data, **kw) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=120, **kw)


def merge_overrides(config: dict, overrides: dict) -> dict:
    """`overrides` over `config`: mappings merge recursively; `models` is keyed by model name."""
    out = copy.deepcopy(config)
    for key, value in overrides.items():
        if key == "models":
            by_name = {m["name"]: m for m in out.get("models", [])}
            for name, patch in value.items():
                if name not in by_name:
                    raise ValueError(f"overrides name model '{name}', which the gateway config does not have")
                by_name[name].update(merge_overrides(by_name[name], patch))
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _isolated_settings() -> GatewaySettings:
    """Defaults only: a render must not depend on the GATEWAY_* variables of the machine that runs it."""
    return GatewaySettings.model_construct(**{k: f.default for k, f in GatewaySettings.model_fields.items()})


def serve_config(raw: dict, gpus: float) -> dict:
    """The Serve config (serveConfigV2) for a gateway config mapping: one application per declared version,
    then the ingress on `/`. Each application's builder gets the config as `args`, so a config change is a
    serveConfigV2 change, which KubeRay applies in place."""
    # In the cluster Serve listens on every address (http_options below): the config the ingress reads says so,
    # which keeps its admin API closed unless GATEWAY_ADMIN_TOKEN is set (protocols/auth.py).
    raw = {**raw, "server": {**(raw.get("server") or {}), "host": "0.0.0.0"}}
    config = parse_config(raw, "k8s render", _isolated_settings())
    raw_models = {m["name"]: m for m in raw["models"]}
    version_base = {k: raw[k] for k in ("server", "registry") if k in raw}
    apps = []
    for d in declared_versions(config):
        model = config.model(d.model)
        apps.append({
            "name": d.app_name,
            "route_prefix": None,  # reached through DeploymentHandles only
            "import_path": BUILD_VERSION,
            "args": {"config": {**version_base, "models": [raw_models[d.model]]}, "selector": d.selector,
                     "gpus": gpus},
            # Visible here and applied by Serve as the deployment's config; the builder sets the same options.
            "deployments": [{"name": model.name, **replica_options(model.resources)}],
        })
    apps.append({"name": GATEWAY_APP, "route_prefix": "/", "import_path": BUILD_GATEWAY,
                 "args": {"config": raw, "gpus": gpus}})
    out = {"proxy_location": "EveryNode", "http_options": {"host": "0.0.0.0", "port": config.server.http_port}}
    if config.server.grpc_port:
        out["grpc_options"] = {"port": config.server.grpc_port, "grpc_servicer_functions": [GRPC_SERVICER]}
    out["applications"] = apps
    return out


def serve_config_patch(root: Path, folder: Path) -> str:
    raw = yaml.safe_load((root / GATEWAY_CONFIG).read_text())
    overrides = yaml.safe_load((root / folder / "gateway-overrides.yaml").read_text()) or {}
    gpus = overrides.pop("gpus", 0)
    config = serve_config(merge_overrides(raw, overrides.pop("config", {}) or {}), gpus)
    if overrides:
        raise ValueError(f"{folder}/gateway-overrides.yaml: unknown keys {sorted(overrides)} (use gpus, config)")
    patch = {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": RAYSERVICE},
             "spec": {"serveConfigV2": dump(config)}}
    return (f"# Generated by `make k8s` from {GATEWAY_CONFIG} and {folder}/gateway-overrides.yaml: do not edit.\n"
            + dump(patch))


def prometheus_rule(root: Path) -> str:
    rules = yaml.safe_load((root / ALERT_RULES).read_text())
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": RAYSERVICE, "labels": {"app.kubernetes.io/name": RAYSERVICE}},
            "spec": {"groups": rules["groups"]}}
    return f"# Generated by `make k8s` from {ALERT_RULES}: do not edit.\n" + dump(rule)


def rendered(root: Path = REPO_ROOT) -> dict[Path, str]:
    """Every generated file: path relative to the repo -> its text."""
    out = {folder / "serve-config.yaml": serve_config_patch(root, folder) for folder in SERVE_CONFIG_DIRS}
    out[PROMETHEUS_RULE] = prometheus_rule(root)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail (exit 1) when a generated file is stale")
    args = parser.parse_args(argv)
    stale = 0
    for rel, text in rendered().items():
        path = REPO_ROOT / rel
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        if args.check:
            stale += 1
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                       f"{rel} (committed)", f"{rel} (fresh render)"))
        else:
            path.write_text(text)
            print(f"wrote {rel}")
    if stale:
        print(f"\n{stale} generated file(s) stale: run `make k8s`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
