"""The data stages at scale: fetch (local), prepare and vocab through `dvc repro`, at two sizes.

Generates a seeded single-file corpus of each size (play-shaped lines drawn from a fixed pool, with
some accented words, nothing from outside the machine) in a temporary workspace holding the
pipeline (dvc.yaml, stages, params.yaml pointing `fetch` at the file), then runs each stage alone
(`dvc repro -s`) and prints its wall time, MB/s of corpus and the peak RSS of its process tree
(DVC and the stage, sampled every 20 ms). Memory that does not grow with the corpus is the point:
compare the two sizes. `--corpus` runs the stages on a file of the caller's instead, a script of
thousands of symbols say (the `generate` prompt is then its first character).

    python benchmarks/bench_data.py --sizes 100 1000     # MB; default
    python benchmarks/bench_data.py --corpus tang.txt
"""

import argparse
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
WORDS = (  # noqa: SIM905 (a word list reads best as text)
    "the and to of my a i you that in is not for with me it be your his this but he have as thou so him"
    " will what by thy all are her do no shall if or our we come now good more lord love then sir well"
    " let here upon how they speak night day heart death king fair sweet yet tell make know hath give"
    " hear must go see ever eyes blood grace doth honour noble gentle true fear peace words hand café"
    " naïve rôle façade œuvre"
).split()
SPEAKERS = ("ROMEO", "JULIET", "NURSE", "MERCUTIO", "FIRST CITIZEN", "KING HENRY", "QUEEN")


def write_corpus(path: Path, size: int, seed: int = 0) -> None:
    """About `size` bytes of seeded play-shaped lines."""
    rng = random.Random(seed)
    pool = []
    for _ in range(20_000):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        line = f"{rng.choice(SPEAKERS)}:" if rng.random() < 0.15 else words.capitalize() + rng.choice(".,;!?")
        pool.append((line + "\n").encode("utf-8"))
    picks = np.random.default_rng(seed)
    written = 0
    with open(path, "wb") as f:
        while size - written > 100:  # whole lines, until less than one is left
            block = b"".join(pool[i] for i in picks.integers(0, len(pool), 200_000))[: size - written]
            block = block[: block.rfind(b"\n") + 1]
            f.write(block)
            written += len(block)


def workspace(root: Path, corpus: Path, prompt: str | None = None) -> Path:
    ws = root / "ws"
    ws.mkdir()
    shutil.copy(REPO / "dvc.yaml", ws)
    shutil.copytree(REPO / "stages", ws / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "src", ws / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["fetch"].update(source="local", path=str(corpus), sha256=None)
    params["prepare"]["include"] = [corpus.name]
    if prompt is not None:
        params["generate"]["prompts"] = [prompt]
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=ws, check=True)
    # Outputs as links into DVC's cache, not copies: the bench measures the stages, not the disk.
    subprocess.run(["dvc", "config", "cache.type", "hardlink,symlink"], cwd=ws, check=True)
    return ws


def run_stage(ws: Path, stage: str) -> tuple[float, int]:
    """`dvc repro -s stage`: its wall seconds and the peak RSS of its process tree, in bytes."""
    start = time.monotonic()
    proc = subprocess.Popen(
        ["dvc", "repro", "-s", stage],
        cwd=ws,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ws / "src")},  # the workspace's copy, not an installed one
    )
    tree, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        rss = 0
        for p in [tree, *tree.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):  # a process may end between the two calls
                rss += p.memory_info().rss
        peak = max(peak, rss)
        time.sleep(0.02)
    seconds = time.monotonic() - start
    output = proc.stdout.read().decode() if proc.stdout else ""
    if proc.returncode:
        raise SystemExit(f"dvc repro -s {stage} failed:\n{output[-2000:]}")
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="corpus sizes in MB")
    parser.add_argument("--corpus", type=Path, help="a UTF-8 text file, instead of the generated sizes")
    parser.add_argument(
        "--tmp", default=None, help="where the workspaces go (default: the system's temp dir)"
    )
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

    print(f"{'corpus':>8} {'stage':>8} {'seconds':>8} {'MB/s':>7} {'peak RSS':>9}")
    for size_mb in [None] if args.corpus else args.sizes:
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            if args.corpus is None:
                corpus, prompt = Path(tmp) / "corpus.txt", None
                write_corpus(corpus, size_mb * 1_000_000)
            else:
                corpus, prompt = args.corpus.resolve(), args.corpus.read_text(encoding="utf-8")[0]
            ws = workspace(Path(tmp), corpus, prompt)
            run_stage(ws, "params")  # checks params.yaml; every other stage waits on it
            for stage in ("fetch", "prepare", "vocab"):
                seconds, peak = run_stage(ws, stage)
                mb = corpus.stat().st_size / 1e6
                print(
                    f"{mb:>6.0f}MB {stage:>8} {seconds:>8.1f} {mb / seconds:>7.1f} {peak / 2**20:>5.0f} MiB",
                    flush=True,
                )
            if args.corpus is not None:
                print((ws / "metrics/data.json").read_text())


if __name__ == "__main__":
    main()
