"""`gateway stream ...`: run the PyFlink job (serve_app/stream/job.py) with the Flink venv's Python.

PyFlink pins numpy/pandas/pyarrow versions the gateway's venv cannot share, so the job runs in .venv-flink
(`make flink-venv`; GATEWAY_FLINK_PYTHON points elsewhere). --help works without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from serve_app.stream.options import parse

REPO = Path(__file__).resolve().parents[2]
# PyFlink's launcher puts HADOOP_CLASSPATH on its JVM's classpath: the one hook for extra jars such as the
# slf4j metrics reporter, which a local mini-cluster does not load from plugins/.
REPORTER_JAR = "pyflink/plugins/metrics-slf4j/flink-metrics-slf4j-2.3.0.jar"


def flink_python() -> Path:
    explicit = os.environ.get("GATEWAY_FLINK_PYTHON")
    return Path(explicit) if explicit else REPO / ".venv-flink" / "bin" / "python"


def job_env(python: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    site = next(python.absolute().parent.parent.glob("lib/python3*/site-packages"), None)
    jars = [str(site / REPORTER_JAR)] if site and (site / REPORTER_JAR).is_file() else []
    env["HADOOP_CLASSPATH"] = os.pathsep.join(filter(None, [*jars, env.get("HADOOP_CLASSPATH")]))
    return env


def job_command(argv: list[str]) -> list[str]:
    return [str(flink_python()), "-m", "serve_app.stream.job", *argv]


def main(argv: list[str]) -> int:
    parse(argv)  # --help and bad options answered here, before a JVM starts
    python = flink_python()
    if not python.is_file():
        print(f"no Flink environment at {python}: run `make flink-venv` (or set GATEWAY_FLINK_PYTHON)",
              file=sys.stderr)
        return 2
    return subprocess.call(job_command(argv), env=job_env(python))
