"""What the tests share, in one place (fixtures stay in tests/conftest.py):

- `support.fakes`: in-process fakes of the dataplane's collaborators (model versions, version managers, a
  pipeline's model call, a registry, metrics, a clock, batch functions and sinks);
- `support.servers`: fakes at the edges (an HTTP server answering like the gateway, a probe target, Ray Serve's
  gRPC context and deployment handles, a bare response for the fuzz oracle);
- `support.inprocess`: one fake classifier behind the in-process app, and a request through it;
- `support.serve`: helpers for a real Ray Serve (ports, addresses, `deployed`, `call_deployment`) and
  `gateway_fixture`, the module-scoped `gateway` fixture of an integration module;
- `support.reliability`: the gateway with auth tokens the reliability tests on Ray Serve deploy;
- `support.k8s`: rendering the Kubernetes overlays and reading what they hold.

Imported as `support.<module>`: pytest puts tests/ on sys.path (rootdir conftest, prepend import mode), as for
tests/tiny_models.py and tests/fuzz_strategies.py."""
