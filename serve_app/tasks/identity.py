"""Identity: returns each text as is, after the model's `delay_ms`. No weights; it measures what a hop of the
gateway costs and gives the reliability tests a model with known answers.

Also the worked example of adding a task: this module (a contract) plus, here, its deployment class
(`deployments/identity.py`, because it counts calls for the tests; a batched model task can use
`deployments.classifier.ClassifierDeployment`'s shape with its own `runtime`)."""

from __future__ import annotations

from serve_app.protocols.schemas import TextsRequest
from serve_app.tasks.contract import Output, TaskContract


class EchoRequest(TextsRequest):
    """`{"texts": [...], "model": "echo"}`: each text back."""


CONTRACT = TaskContract(
    name="identity",
    outputs=(Output("text", "BYTES", field_type="text"),),
    deployment="deployments.identity:IdentityDeployment",
    request=EchoRequest,
)
