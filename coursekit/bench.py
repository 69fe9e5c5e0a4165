"""Speed table of `estimate_log_likelihood` and of one training epoch: ``coursekit bench [--quick] [--device D]``.

Model: the one-layer IWAE-paper model x(784)-200-200-h(50), tanh, Bernoulli (`HierarchicalVAE.iwae_paper(1)`),
untrained, on random binary inputs of MNIST size (no download: speed does not depend on the pixels).

- log-likelihood: k=5000 importance samples for each of 1,000 inputs, with two chunk sizes, beside
  (a) a straightforward reference that loops over the inputs and runs the encoder once per *sample*
  (each input repeated k times), timed on a few inputs and extrapolated, and
  (b) the floor: the decoder's multiply-adds (k x inputs x MACs per sample; the encoder runs once per
  input, which is negligible) divided by the rate of a large float32 matmul measured in the same run.
  "vs matmul" is the achieved decoder GFLOP/s over the matmul GFLOP/s (target >= 0.5).
- peak memory: on CUDA, torch.cuda.max_memory_allocated() above what was allocated before the call.
  On CPU (Linux), each library row runs in a fresh Python process, which reports the growth of its peak
  resident set size (VmHWM in /proc/self/status, reset through /proc/self/clear_refs) during the timed
  call, so memory freed by earlier measurements cannot hide it. It counts everything the call touches
  (tensors, allocator slack). CPU rows come twice: with the malloc settings the course's Makefile gives every
  process it starts (`MALLOC_TUNED`: glibc keeps freed buffers up to 64 MB for reuse) and with glibc as it
  comes (freed chunk buffers are unmapped and page-faulted back in for every chunk). The library itself
  never touches the allocator.
- training: one epoch over 60,000 inputs, batch 100, Adam, loss -L_k, for k=1 and k=50; --quick times a
  tenth of the batches and extrapolates.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch

from gvlib import get_device, seed_everything
from gvlib.bounds import estimate_log_likelihood, iwae_bound
from gvlib.models import HierarchicalVAE

K = 5000
N_INPUTS = 1000
D = 784
CONFIGS = ((250, 4), (1000, 4))  # (chunk = samples per call, batch_size = inputs per call)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _timed(fn, device):
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t, out


def matmul_gflops(device: torch.device, n: int = 4096, repeats: int = 5, cpu_time: bool = False) -> float:
    """GFLOP/s of an n x n float32 matmul on `device` (best of `repeats`): 2 n^3 / seconds / 1e9; with
    cpu_time, per second of this process's CPU time (all threads), which time-sharing with other jobs does not inflate."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = math.inf
    for _ in range(repeats):
        c0 = time.process_time()
        dt, _ = _timed(lambda: a @ b, device)
        best = min(best, time.process_time() - c0 if cpu_time else dt)
    return 2 * n**3 / best / 1e9


def decoder_macs(model: HierarchicalVAE) -> int:
    """Multiply-adds of one decoder pass p(x | h) for one sample: the sum of in x out over its Linear layers."""
    return sum(m.in_features * m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear))


def _model_and_data(device, n, seed=0):
    seed_everything(seed)
    model = HierarchicalVAE.iwae_paper(1).to(device).eval()
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, D, generator=g) < 0.13).float().to(device)  # MNIST's mean pixel intensity ~0.13
    return model, x


def reference_log_likelihood(model, x: torch.Tensor, k: int = K) -> torch.Tensor:
    """The straightforward estimate: for each input, its k copies through encoder and decoder (encoder per sample)."""
    out = []
    with torch.no_grad():
        for xi in x:
            lw = model.log_weights(xi.expand(k, -1), 1)[0]  # k copies, one sample each: (k,)
            out.append(torch.logsumexp(lw, 0) - math.log(k))
    return torch.stack(out)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
"""glibc's malloc settings that the Makefile exports (make test, execute, lab, bench): buffers up to 32 MB come from
the heap, not from mmap, and up to 64 MB of freed memory is kept for reuse instead of being returned to the OS.
Chunked estimation frees and re-allocates buffers of a few MB thousands of times; with glibc's defaults each
chunk's pages are unmapped and faulted in again. Setting them where the process starts (the environment) leaves
the library free of process-wide side effects."""


def _estimate_child(chunk: int, batch_size: int, n: int) -> None:
    """Run in a fresh process: seconds and peak RSS growth (MiB) of estimate_log_likelihood on n inputs."""
    model, x = _model_and_data(torch.device("cpu"), n)
    estimate_log_likelihood(model, x[:1], k=2, chunk=2, batch_size=1)  # load kernels and libraries first
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    base = _rss_kib("VmRSS")
    t, c = time.perf_counter(), time.process_time()
    estimate_log_likelihood(model, x, k=K, chunk=chunk, batch_size=batch_size)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    print(json.dumps({"seconds": dt, "cpu_seconds": dc, "peak_mib": (_rss_kib("VmHWM") - base) / 1024}))


def time_and_memory(device: torch.device, chunk: int, batch_size: int, n: int,
                    malloc: str = "default") -> tuple[float, float | None, float | None]:
    """Seconds of estimate_log_likelihood(k=K) on n inputs, its peak extra memory in MiB and its CPU seconds (None if unmeasured).

    CPU on Linux: in a fresh process (`malloc`: "default" = with MALLOC_TUNED in its environment, as the Makefile
    starts every process, or "untouched" = glibc as it comes), peak
    RSS growth. CUDA: in this process, torch.cuda.max_memory_allocated above the allocation before the call.
    """
    if device.type == "cpu" and os.path.exists("/proc/self/clear_refs"):
        env = {k: v for k, v in os.environ.items() if k not in MALLOC_TUNED and k != "GLIBC_TUNABLES"}
        if malloc != "untouched":
            env.update(MALLOC_TUNED)
        out = subprocess.run([sys.executable, "-m", "coursekit.bench", "--child", str(chunk), str(batch_size), str(n)],
                             capture_output=True, text=True, check=True, timeout=3600, env=env)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        return res["seconds"], res["peak_mib"], res["cpu_seconds"]
    model, x = _model_and_data(device, n)
    estimate_log_likelihood(model, x[:batch_size], k=chunk, chunk=chunk, batch_size=batch_size)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    dt, _ = _timed(lambda: estimate_log_likelihood(model, x, k=K, chunk=chunk, batch_size=batch_size), device)
    mem = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" else None
    return dt, mem, None


def train_epoch_seconds(device: torch.device, k: int, n: int = 60_000, batch_size: int = 100,
                        fraction: float = 1.0) -> float:
    """Seconds for one Adam epoch of -L_k over n inputs (timing `fraction` of the batches and extrapolating)."""
    model, x = _model_and_data(device, n)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n_batches = n // batch_size
    timed = max(1, int(round(n_batches * fraction)))

    def step(i):
        xb = x[i * batch_size:(i + 1) * batch_size]
        loss = -iwae_bound(model.log_weights(xb, k)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(0)  # warm-up (kernel selection, allocator)
    dt, _ = _timed(lambda: [step(i % n_batches) for i in range(timed)], device)
    return dt * n_batches / timed


def main(argv=None) -> int:
    """`coursekit bench [--quick] [--device D]`: print the speed tables (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="coursekit bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: gvlib.get_device())")
    parser.add_argument("--quick", action="store_true",
                        help="time 100 of the 1,000 inputs and a tenth of the epoch, and extrapolate")
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _estimate_child(*args.child)
        return 0

    device = get_device(args.device)
    n_timed = 100 if args.quick else N_INPUTS
    n_ref = 3 if args.quick else 10
    tuned = all(os.environ.get(k) == v for k, v in MALLOC_TUNED.items())
    print(f"coursekit bench on {device} ({torch.__version__}, {torch.get_num_threads()} threads; training rows "
          f"with malloc {'as the Makefile sets it' if tuned else 'as glibc comes'})"
          f"{' --quick' if args.quick else ''}")
    model, x = _model_and_data(device, N_INPUTS)
    macs = decoder_macs(model)
    flops = 2 * macs * K * N_INPUTS
    rate = matmul_gflops(device)
    cpu_rate = matmul_gflops(device, cpu_time=True) if device.type == "cpu" else None
    floor_s = flops / (rate * 1e9)
    print(f"float32 matmul 4096^2: {rate:.1f} GFLOP/s; decoder {macs:,} multiply-adds per sample, "
          f"k x inputs = {K} x {N_INPUTS}: {flops / 1e12:.2f} TFLOP")
    print()
    print(f"estimate_log_likelihood, k={K}, {N_INPUTS} inputs"
          + (f" (timed on {n_timed}, scaled x{N_INPUTS // n_timed})" if n_timed < N_INPUTS else ""))
    print("| method | seconds | inputs/s | peak memory | decoder GFLOP/s | vs matmul | vs matmul, CPU time |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    mallocs = ("default", "untouched") if device.type == "cpu" and os.path.exists("/proc/self/clear_refs") else (None,)
    for chunk, bs in CONFIGS:
        for malloc in mallocs:
            rate_before = matmul_gflops(device, repeats=3)
            dt, mem, cpu_s = time_and_memory(device, chunk, bs, n_timed, malloc or "default")
            rate_after = matmul_gflops(device, repeats=3)
            dt *= N_INPUTS / n_timed
            mm = max(rate, rate_before, rate_after)  # the fastest the machine did in this run: a conservative ratio
            achieved = flops / dt / 1e9
            cpu_ratio = None
            if cpu_s:
                cpu_ratio = flops / (cpu_s * N_INPUTS / n_timed) / 1e9 / cpu_rate
            label = f"library, chunk={chunk} x batch_size={bs}" + (", malloc as glibc comes" if malloc == "untouched" else "")
            rows.append((label, dt, mem, achieved, achieved / mm, cpu_ratio))
    ref_dt, _ = _timed(lambda: reference_log_likelihood(model, x[:n_ref]), device)
    ref_dt *= N_INPUTS / n_ref
    rows.append((f"reference: loop over inputs, encoder per sample (timed on {n_ref}, extrapolated)",
                 ref_dt, None, flops / ref_dt / 1e9, flops / ref_dt / 1e9 / rate, None))
    rows.append(("floor: decoder FLOPs / matmul rate", floor_s, None, rate, 1.0, None))
    for name, dt, mem, achieved, ratio, cpu_ratio in rows:
        mem_s = "-" if mem is None else f"{mem:.0f} MiB"
        cpu_s = "-" if cpu_ratio is None else f"{cpu_ratio:.2f}"
        print(f"| {name} | {dt:.1f} | {N_INPUTS / dt:.1f} | {mem_s} | {achieved:.1f} | {ratio:.2f} | {cpu_s} |")
    print()
    frac = 0.1 if args.quick else 1.0
    print("one training epoch, 60,000 inputs of 784, batch 100, Adam, loss -L_k"
          + (" (a tenth of the batches timed, scaled x10)" if args.quick else ""))
    print("| k | seconds per epoch |")
    print("| ---: | ---: |")
    for k in (1, 50):
        print(f"| {k} | {train_epoch_seconds(device, k, fraction=frac):.1f} |")
    print()
    print("peak memory: " + ("torch.cuda.max_memory_allocated above the allocation before the call"
                             if device.type == "cuda" else
                             "growth of the peak RSS (VmHWM) during the timed call, each row in a fresh process"
                             if device.type == "cpu" else "not measured on this device"))
    if len(mallocs) > 1:
        print("malloc as glibc comes: freed chunk buffers go back to the OS and are faulted in again for every chunk;"
              " the other rows run with MALLOC_MMAP_THRESHOLD_=32 MB and MALLOC_TRIM_THRESHOLD_=64 MB, as the Makefile"
              " starts every process, so up to 64 MB of them are reused")
    print("vs matmul: achieved decoder GFLOP/s over the best float32 matmul rate measured in this run (wall clock);"
          " the CPU-time column divides both by process CPU seconds instead, which other jobs on the machine do not inflate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
