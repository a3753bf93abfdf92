"""What the tests share, in one place (fixtures stay in tests/conftest.py):

- `support.fakes`: in-process fakes of the dataplane's collaborators (model versions, version managers, a
  pipeline's model call, a registry, metrics, a clock, batch functions and sinks);
- `support.servers`: fakes at the edges (an HTTP server answering like the gateway, a probe target, Ray Serve's
  gRPC context and deployment handles, a bare response for the fuzz oracle);
- `support.inprocess`: one fake classifier behind the in-process app, and a request through it;
- `support.serve`: helpers for a real Ray Serve (ports, addresses, `deployed`, `call_deployment`) and
  `gateway_fixture`, the module-scoped `gateway` fixture of an integration module;
- `support.reliability`: the gateway with auth tokens the reliability tests on Ray Serve deploy;
- `support.k8s`: rendering the Kubernetes overlays and reading what they hold;
- `support.tiny_models`: tiny random-weight classifier and summarizers for plumbing tests;
- `support.fuzz_strategies`: hypothesis strategies and the oracle of the API fuzz tests;
- `support.s3_server`: a real S3-compatible server (moto) on loopback;
- `support.stream_proxy`: a TCP proxy that injects faults between the stream job and the gateway.

Imported as `support.<module>`: pytest puts tests/ on sys.path (rootdir conftest, prepend import mode)."""
