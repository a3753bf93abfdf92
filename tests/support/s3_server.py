"""A real S3-compatible server on loopback: moto's standalone server, started and stopped by the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx

from support.serve import free_port

CREDENTIALS = {"key": "testing", "secret": "testing", "region": "us-east-1"}


@contextmanager
def moto_s3_server():
    """Yield the endpoint URL of a fresh moto S3 server on 127.0.0.1."""
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    if exe is None:
        raise RuntimeError("moto_server not found; install the test extra: pip install 'moto[server]'")
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto S3 server did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


def make_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=CREDENTIALS["key"],
                 aws_secret_access_key=CREDENTIALS["secret"],
                 region_name=CREDENTIALS["region"]).create_bucket(Bucket=bucket)
