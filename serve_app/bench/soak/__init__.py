"""The soak (`python -m serve_app.bench.soak`, `make soak`): steady load at ~70% of measured capacity, every
answer checked against its reference, RSS of Ray's processes before, during and after (see __main__.py).

    targets.py  the known inputs, one model's calls and answers;  mixed.py  the mixed soak's round robin
    load.py     capacity (closed loop) and the open-loop Stream;   memory.py RSS samples and their plot
    run.py      run_soak (against a running gateway) and passed;   configs.py what a local soak deploys
"""

from serve_app.bench.soak.configs import soak_config
from serve_app.bench.soak.run import RSS_GROWTH_LIMIT_PCT, passed, run_soak
from serve_app.bench.soak.targets import Target

__all__ = ["RSS_GROWTH_LIMIT_PCT", "Target", "passed", "run_soak", "soak_config"]
