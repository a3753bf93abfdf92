"""Ray Serve deployments: thin shells that hold models and call the gateway's plain-Python logic."""
