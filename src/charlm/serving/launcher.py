"""`charlm serve`: MLflow's scoring server for a charlm model, its workers sized to the cores."""

import os
import sys
from pathlib import Path

import charlm_scoring_loop


def default_workers(threads: int) -> int:
    """As many workers of `threads` torch threads as the cores hold: torch processes whose threads
    outnumber the cores slow each other down several-fold."""
    return max(1, (os.cpu_count() or 1) // threads)


def serve_command(
    model_uri: str, host: str, port: int, tracking_uri: str, workers: int | None = None, threads: int = 1
) -> tuple[list[str], dict[str, str]]:
    """`mlflow models serve` for a charlm model, and its environment: worker processes of `threads` torch
    threads each (by default, `default_workers`), and uvicorn on `charlm_scoring_loop.ScoringLoop`."""
    cores = os.cpu_count() or 1
    workers = workers or default_workers(threads)
    if workers * threads > cores:
        print(
            f"serve: {workers} workers x {threads} torch threads oversubscribe {cores} cores", file=sys.stderr
        )
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"]
    cmd += ["-h", host, "-p", str(port), "-w", str(workers)]
    env = {
        **os.environ,
        # The scoring server starts `uvicorn` by name: find it beside this interpreter.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "OMP_NUM_THREADS": str(threads),
        "UVICORN_LOOP": f"{charlm_scoring_loop.__name__}:{charlm_scoring_loop.ScoringLoop.__name__}",
    }
    return cmd, env
