"""Scaling benchmark: ``synergy`` (latent memory) vs ``attention`` (full self-attention).

Both cores get the same width D and depth, and N input tokens split evenly over two modalities
(an image and a series, every token valid, every modality available). For each N the script
measures one forward + backward pass:

* wall time: median (and minimum) of up to ``--repeats`` runs after ``--warmup`` untimed runs;
* peak memory of one further, untimed run above what was held before it (inputs, weights):
  CUDA ``max_memory_allocated``; on CPU the growth of the kernel's peak-RSS mark (VmHWM, reset
  through ``/proc/self/clear_refs``) with glibc told to return freed tensors to the system, in a
  fresh subprocess per configuration (torch's allocations are invisible to ``tracemalloc``);
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` during the first warm-up run.

Before each configuration its time and memory are extrapolated from the two previous sizes (on
the log-log slope actually measured, clamped to [0, 3]); a configuration whose warm-up, one timed
run and the memory run would exceed ``--budget-s``, or whose memory would exceed the memory
budget, is recorded as skipped, with the estimate, rather than run. Timed runs stop early once
they used half the budget.

Usage::

    python bench/scaling.py                       # CPU, writes bench/results/scaling.md
    python bench/scaling.py --device cuda --repeats 10 --out bench/results/scaling_cuda.md
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODALITIES = {"xray": "image", "vitals": "series"}
M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    parser.add_argument("--cores", nargs="+", default=["synergy", "attention"])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--num-latents", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (at least 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--budget-s", type=float, default=600.0, help="skip a run estimated to take longer"
    )
    parser.add_argument(
        "--memory-budget-gib",
        type=float,
        default=None,
        help="skip a run estimated to need more (default: 70%% of available memory)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scaling.md")
    parser.add_argument("--worker", nargs=2, metavar=("CORE", "TOKENS"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def core_options(name: str, args: argparse.Namespace) -> dict:
    """Equal width and depth for both cores; synergy's latent attention uses the same heads."""
    if name == "synergy":
        return {
            "num_latents": args.num_latents,
            "depth": args.depth,
            "latent_heads": args.heads,
            "latent_dim_head": args.dim // args.heads,
        }
    if name == "attention":
        return {"depth": args.depth, "heads": args.heads}
    return {}


def current_rss() -> int:
    """Resident set size now, in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) so it covers the timed runs only (Linux ≥ 4.0)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def peak_rss() -> int:
    """Peak resident set size since the last :func:`reset_peak_rss`, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def run_worker(args: argparse.Namespace) -> dict:
    """Measure one (core, N) in this process; returns the numbers as a dict."""
    import torch
    from torch.utils.flop_counter import (
        FlopCounterMode,
        sdpa_backward_flop_count,
        sdpa_flop_count,
    )

    from polymodal.fusion import create_core

    torch.set_num_threads(args.threads)
    name, n_tokens = args.worker[0], int(args.worker[1])
    device = torch.device(args.device)
    torch.manual_seed(0)
    core = create_core(name, modalities=MODALITIES, dim=args.dim, **core_options(name, args))
    core = core.to(device).train()
    half = n_tokens // 2
    lengths = {"xray": half, "vitals": n_tokens - half}
    tokens = {
        m: torch.randn(args.batch, n, args.dim, device=device, requires_grad=True)
        for m, n in lengths.items()
    }
    masks = {
        m: torch.ones(args.batch, n, dtype=torch.bool, device=device) for m, n in lengths.items()
    }
    available = {m: torch.ones(args.batch, dtype=torch.bool, device=device) for m in lengths}

    def step() -> None:
        core.zero_grad(set_to_none=True)
        out = core(tokens, masks, available)  # (B, D_out)
        out.square().mean().backward()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    # Warm-up: lazy kernel selection, thread pools and allocator caches settle here; the first
    # run also counts the FLOPs (FlopCounterMode slows it, so it is never timed).
    aten = torch.ops.aten
    # torch's counter knows the CUDA attention kernels but not the fused CPU one: count it with
    # torch's own SDPA formulas, or full attention would look linear on CPU.
    cpu_attention = {
        aten._scaled_dot_product_flash_attention_for_cpu: (
            lambda q, k, v, *_, **__: sdpa_flop_count(q, k, v)
        ),
        aten._scaled_dot_product_flash_attention_for_cpu_backward: (
            lambda grad, q, k, v, *_, **__: sdpa_backward_flop_count(grad, q, k, v)
        ),
    }
    flops = FlopCounterMode(display=False, custom_mapping=cpu_attention)
    first = time.perf_counter()
    with flops:
        step()
    # A run of several seconds dwarfs any one-off cost: more warm-up would only burn time.
    if time.perf_counter() - first < 5.0:
        for _ in range(args.warmup - 1):
            step()

    times: list[float] = []
    # Stop early once the timed runs alone used half the budget (at least one run).
    while len(times) < args.repeats and sum(times) < args.budget_s / 2:
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)

    return {
        "core": name,
        "tokens": n_tokens,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "runs": len(times),
        "times_s": times,
        "peak_bytes": measure_peak_memory(step, device),
        "flops": flops.get_total_flops(),
        "parameters": sum(p.numel() for p in core.parameters()),
    }


def measure_peak_memory(step, device) -> int:
    """Peak memory of one more ``step()`` above what was held before it, in bytes.

    CUDA: ``max_memory_allocated``. CPU: growth of the peak RSS. glibc would otherwise keep freed
    tensors' pages and hand them out again unseen, so it is first told to serve every block of
    64 KiB or more by mmap (returned to the system on free) and to give back what it holds; this
    one run is not timed, since page faults slow it.
    """
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - baseline
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)
    libc.malloc_trim(0)
    baseline = current_rss()
    reset_peak_rss()
    step()
    return max(peak_rss() - baseline, 0)


def extrapolate(points: list[tuple[int, float]], n: int) -> float | None:
    """Value at n from the log-log line through the last two measured (size, value) points.

    The slope is clamped to [0, 3] so that one noisy measurement on a shared machine cannot
    turn into an absurd estimate.
    """
    if len(points) < 2:
        return None
    (n0, v0), (n1, v1) = points[-2], points[-1]
    if v0 <= 0 or v1 <= 0:
        return None
    slope = min(max(math.log(v1 / v0) / math.log(n1 / n0), 0.0), 3.0)
    return v1 * (n / n1) ** slope


def available_memory() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def worker_command(args: argparse.Namespace, name: str, n: int) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, str(n)]
    flags = (
        "dim",
        "depth",
        "heads",
        "num_latents",
        "batch",
        "repeats",
        "warmup",
        "threads",
        "budget_s",
    )
    for flag in flags:
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return [*command, "--device", args.device]


def run_all(args: argparse.Namespace) -> list[dict]:
    memory_budget = (
        args.memory_budget_gib * 2**30
        if args.memory_budget_gib
        else (0.7 * available_memory() if args.device == "cpu" else None)
    )
    results = []
    for name in args.cores:
        measured_time: list[tuple[int, float]] = []
        measured_memory: list[tuple[int, float]] = []
        for n in sorted(args.tokens):
            est_time = extrapolate(measured_time, n)
            est_memory = extrapolate(measured_memory, n)
            # The least a measurement needs: warm-up, one timed run and the memory run.
            runs = args.warmup + 2  # + the untimed memory run
            row = {"core": name, "tokens": n}
            if est_time is not None and est_time * runs > args.budget_s:
                row["skipped"] = (
                    f"would take ~{est_time * runs:.0f} s ({runs} runs of ~{est_time:.1f} s) "
                    f"by extrapolation, over the {args.budget_s:.0f} s budget"
                )
            elif memory_budget and est_memory is not None and est_memory > memory_budget:
                row["skipped"] = (
                    f"would need ~{est_memory / 2**30:.1f} GiB by extrapolation, over the "
                    f"{memory_budget / 2**30:.1f} GiB budget"
                )
            else:
                print(f"[scaling] {name} N={n} …", file=sys.stderr, flush=True)
                try:
                    done = subprocess.run(
                        worker_command(args, name, n),
                        capture_output=True,
                        text=True,
                        timeout=2 * args.budget_s + 60,
                        cwd=REPO,
                        check=False,
                    )
                except subprocess.TimeoutExpired:
                    row["skipped"] = f"timed out after {2 * args.budget_s + 60:.0f} s"
                else:
                    if done.returncode != 0:
                        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
                        row["skipped"] = f"failed: {tail[0]}"
                    else:
                        row = json.loads(done.stdout.strip().splitlines()[-1])
                        # The fastest run is the least disturbed by other jobs.
                        measured_time.append((n, row["min_s"]))
                        measured_memory.append((n, max(row["peak_bytes"], 1)))
            print(f"[scaling] {json.dumps(row)}", file=sys.stderr, flush=True)
            results.append(row)
    return results


def write_markdown(
    args: argparse.Namespace, results: list[dict], command: str, load: tuple[float, float]
) -> str:
    # Imported here: this module sets the thread count before torch is first imported.
    from _common import machine, table, table_row, write_report

    lines = [
        "# Scaling: `synergy` vs `attention`",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine(args.threads)}; load average {load[0]:.1f} at the start, "
        f"{load[1]:.1f} at the end (other jobs share the CPUs: compare within a run).",
        f"Setup: D = {args.dim}, depth = {args.depth}, {args.heads} heads, synergy L = "
        f"{args.num_latents} latents; batch {args.batch}; N tokens split evenly over two "
        "modalities, all valid; fp32; one forward + backward; median and minimum of "
        f"up to {args.repeats} runs (fewer when they exceed half the budget) after "
        f"{args.warmup} warm-up run(s).",
        "",
        *table(
            [
                "core",
                "tokens N",
                "fwd+bwd time (s), median",
                "min–max (s)",
                "timed runs",
                "peak memory (MiB)",
                "GFLOPs (fwd+bwd)",
                "parameters",
            ],
            align="lrrrrrrr",
        ),
    ]
    for row in results:
        if "skipped" in row:
            skipped = [row["core"], f"{row['tokens']:,}", f"skipped: {row['skipped']}"]
            lines.append(table_row(skipped + [""] * 5))
            continue
        spread = f"{min(row['times_s']):.4f}–{max(row['times_s']):.4f}"
        lines.append(
            table_row(
                [
                    row["core"],
                    f"{row['tokens']:,}",
                    f"{row['median_s']:.4f}",
                    spread,
                    row["runs"],
                    f"{row['peak_bytes'] / 2**20:.1f}",
                    f"{row['flops'] / 1e9:.2f}",
                    f"{row['parameters']:,}",
                ]
            )
        )
    lines += [
        "",
        "Ratio time(16,384) / time(1,024) (≤ 20 expected for synergy; ~256 for a cost in N²):",
        "",
    ]
    for name in args.cores:
        by_n = {r["tokens"]: r for r in results if r["core"] == name and "skipped" not in r}
        if 16384 in by_n and 1024 in by_n:
            big, small = by_n[16384], by_n[1024]
            lines.append(
                f"- `{name}`: {big['median_s'] / small['median_s']:.1f} on medians, "
                f"{big['min_s'] / small['min_s']:.1f} on minima "
                f"(FLOPs ratio {big['flops'] / small['flops']:.1f})"
            )
        else:
            lines.append(f"- `{name}`: not available (a size was skipped)")
    return write_report(args.out, lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        sys.path.insert(0, str(REPO / "src"))
        print(json.dumps(run_worker(args)))
        return
    shown = [a if not a.startswith(str(REPO)) else os.path.relpath(a, REPO) for a in sys.argv[1:]]
    command = " ".join(["python bench/scaling.py", *shown])
    load_start = os.getloadavg()[0]
    results = run_all(args)
    print(write_markdown(args, results, command, (load_start, os.getloadavg()[0])))


if __name__ == "__main__":
    main()
