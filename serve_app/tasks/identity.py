"""Identity: returns each text as is, after the model's `delay_ms`. No weights; it measures what a hop of the
gateway costs and gives the reliability tests a model with known answers.

The smallest contract (README "Adding a task"). Its deployment is its own (`deployments/identity.py`: it has no
weights and counts calls for the tests); a task with weights that answers batches of texts needs no deployment
of its own: `deployments.batched:BatchedDeployment` serves any runtime its loader returns."""

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
