"""The champion under concurrency across machines: processes that share nothing but one tracking
server register different models at the same moment, round after round, and the alias always ends
on the best version by validation bpc, with no weights registered twice."""

import multiprocessing
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import register_candidate, saved_candidate, store

pytestmark = pytest.mark.slow

ROUNDS = 6  # every code before the convergence failed within two rounds
WORKERS = 2
MODEL_NAME = "race"


def _register(server: str, root: Path, seed: int, val_bpc: float, ready: Any, delay: float) -> int:
    """One teammate's machine: its own working copy; once every machine of the round is `ready`
    (a barrier), registration after `delay` seconds."""
    root.mkdir(parents=True)
    os.chdir(root)  # nothing on disk is shared: no common lock file, no common store
    os.environ["MLFLOW_TRACKING_URI"] = server
    candidate = saved_candidate(root, seed, val_bpc)
    ready.wait()
    time.sleep(delay)
    # No margin: the best version, however close the others, is the one the alias must end on.
    return register_candidate(
        store(server), candidate, model_name=MODEL_NAME, min_improvement_bpc=0.0
    ).version


def test_concurrent_registrations_end_on_the_best_version_every_time(
    sqlite_server: str, tmp_path: Path
) -> None:
    rng = random.Random(0)
    server = sqlite_server
    with (
        ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as machines,
        multiprocessing.get_context("spawn").Manager() as manager,
    ):
        ready = manager.Barrier(WORKERS)
        client = store(server)
        bpc_of_seed: dict[int, float] = {}
        for round_ in range(ROUNDS):
            seeds = [round_ * WORKERS + w for w in range(WORKERS)]
            if round_ % 4 == 1:
                seeds[1] = seeds[0]  # two machines with the same weights (and so the same figures)
            for seed in seeds:
                bpc_of_seed.setdefault(seed, round(rng.uniform(1.0, 3.0), 4))
            jobs = [
                machines.submit(
                    _register,
                    server,
                    tmp_path / f"r{round_}w{w}",
                    seed,
                    bpc_of_seed[seed],
                    ready,
                    rng.uniform(0, 0.05),
                )
                for w, seed in enumerate(seeds)
            ]
            registered = [job.result() for job in jobs]

            versions = client.search_model_versions(f"name='{MODEL_NAME}'")
            weights = [v.tags["charlm.model_sha256"] for v in versions]
            assert len(weights) == len(set(weights)) == len(bpc_of_seed), f"round {round_}: weights twice"
            assert registered[0] == registered[1] or seeds[0] != seeds[1]
            best = min(versions, key=lambda v: (float(v.tags["charlm.val_bpc"]), int(v.version)))
            assert float(best.tags["charlm.val_bpc"]) == min(bpc_of_seed.values())
            champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
            assert champion.version == best.version, f"round {round_}: the alias is on a worse version"
