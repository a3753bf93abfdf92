"""Wire protocols over the one dataplane: Open Inference Protocol v2 (KServe/Triton) and TF Serving REST."""
