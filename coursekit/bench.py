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
- data-parallel training: the same epoch through `gvlib.train.fit`, in 1 process and in 2 processes started by
  torchrun (same global batch of 100, 50 rows per process), each configuration in fresh processes. On a CPU the
  2 processes share the cores the single process has (threads split between them; gloo); on CUDA one GPU per
  process (NCCL), the 2-GPU row only where 2 GPUs are present. The epoch time is fit's own (History.time),
  so process start-up and the process group's set-up are not in it.
- on CUDA the estimator runs on 10,000 inputs (the MNIST test images where they are on disk, else random binary
  ones of the same size) with GPU-sized chunks, and the matmul floor is a 8192^2 float32 matmul on the same GPU.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gvlib import get_device, seed_everything
from gvlib.bounds import estimate_log_likelihood, iwae_bound
from gvlib.models import HierarchicalVAE

K = 5000
N_INPUTS = 1000
D = 784
CONFIGS = ((250, 4), (1000, 4))  # (chunk = samples per call, batch_size = inputs per call)
CUDA_INPUTS = 10_000  # the MNIST test set
CUDA_CONFIGS = ((1000, 20), (5000, 20), (5000, 100))
DP_BATCH = 100  # the global batch of the data-parallel rows


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


def test_images(device: torch.device, n: int = CUDA_INPUTS) -> tuple[torch.Tensor, str]:
    """(n inputs of 784 binary pixels on `device`, what they are): binarized MNIST's or MNIST's test images where the
    files are on disk (nothing is downloaded), else random binary images of the same size."""
    from gvlib import data

    for load in (lambda: data.load_binarized_mnist("test", download=False),
                 lambda: data.load_mnist("test", binarize="fixed", download=False)[0]):
        try:
            x = load()
        except (data.DataError, OSError):
            continue
        if x.shape[0] >= n:
            return x[:n].to(device), f"{n:,} MNIST test images"
    _, x = _model_and_data(device, n)
    return x, f"{n:,} random binary images (no MNIST test split in {data.data_root()})"


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


def _time_on(model, x, chunk: int, batch_size: int, device) -> tuple[float, float | None, None]:
    """CUDA: seconds of estimate_log_likelihood(k=K) on the given inputs and the peak extra memory in MiB."""
    estimate_log_likelihood(model, x[:batch_size], k=chunk, chunk=chunk, batch_size=batch_size)  # warm-up
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    dt, _ = _timed(lambda: estimate_log_likelihood(model, x, k=K, chunk=chunk, batch_size=batch_size), device)
    return dt, (torch.cuda.max_memory_allocated(device) - base) / 2**20, None


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


def _fit_child(k: int, n: int, device: str) -> None:
    """Run in fresh processes (one, or each of torchrun's): one epoch of fit on n inputs; one JSON line per process."""
    from gvlib.train import fit

    dev = torch.device(device)
    if dev.type == "cuda":  # one GPU per process under torchrun
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    model, x = _model_and_data(dev, n)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = lambda m, batch: -iwae_bound(m.log_weights(batch[0], k)).mean()  # noqa: E731
    world = int(os.environ.get("WORLD_SIZE", "1"))
    fit(model, loss, x[:2 * DP_BATCH], epochs=1, batch_size=DP_BATCH, optimizer=opt, progress=False)  # warm-up
    c = time.process_time()
    h = fit(model, loss, x, epochs=1, batch_size=DP_BATCH, optimizer=opt, seed=0, progress=False)
    rank = int(os.environ.get("RANK", "0"))
    report = json.dumps({"rank": rank, "processes": world, "seconds": h.time[0],
                         "cpu_seconds": time.process_time() - c, "threads": torch.get_num_threads()})
    # one file per process: lines that several processes print to one pipe can interleave
    Path(os.environ["COURSEKIT_BENCH_REPORTS"], f"rank{rank}.json").write_text(report)


def data_parallel_epoch(device: torch.device, k: int, processes: int, threads: int, n: int,
                        torchrun: bool | None = None) -> dict:
    """One epoch of fit (k importance samples, n inputs, global batch DP_BATCH) in `processes` fresh processes of
    `threads` threads each, under torchrun when `torchrun` (default: for more than one process)
    -> {"seconds": the slowest process's epoch, "cpu_seconds": summed over the processes}."""
    child = ["-m", "coursekit.bench", "--fit-child", str(k), str(n), device.type]
    if not (processes > 1 if torchrun is None else torchrun):
        cmd = [sys.executable, *child]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *child]
    with tempfile.TemporaryDirectory(prefix="coursekit-bench-") as reports:
        # GVLIB_THREADS too: importing gvlib would otherwise put the child on one thread (the cpu profile's default)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "GVLIB_THREADS": str(threads), "GVLIB_QUIET": "1", "COURSEKIT_BENCH_REPORTS": reports}
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}")
        rows = [json.loads(f.read_text()) for f in sorted(Path(reports).glob("rank*.json"))]
    if len(rows) != processes:
        raise RuntimeError(f"expected {processes} reports, got {len(rows)}:\n{run.stdout[-2000:]}")
    return {"seconds": max(r["seconds"] for r in rows), "cpu_seconds": sum(r["cpu_seconds"] for r in rows)}


def data_parallel_rows(device: torch.device, fraction: float) -> list[tuple[str, dict]]:
    """(label, {k: seconds per epoch, k_cpu: CPU seconds}) for 1 and 2 processes on `device` (see the docstring)."""
    n = int(round(60_000 * fraction / (2 * DP_BATCH))) * 2 * DP_BATCH  # whole global batches, as many per process
    if device.type == "cuda":  # torchrun with 1 process: fit's data-parallel path (NCCL) on any machine with a GPU
        configs = [("1 process, 1 GPU", 1, 1, False), ("torchrun, 1 process, 1 GPU (NCCL)", 1, 1, True)]
        if torch.cuda.device_count() >= 2:
            configs.append(("torchrun, 2 processes, 2 GPUs (NCCL)", 2, 1, True))
    else:
        total = torch.get_num_threads()
        half = max(1, total // 2)
        configs = [(f"1 process x {total} thread{'s' if total > 1 else ''}", 1, total, False),
                   (f"torchrun, 2 processes x {half} thread{'s' if half > 1 else ''} (gloo)", 2, half, True)]
    out = []
    for label, processes, threads, torchrun in configs:
        row = {}
        for k in (1, 50):
            r = data_parallel_epoch(device, k, processes, threads, n, torchrun)
            row[k], row[f"{k}_cpu"] = r["seconds"] * 60_000 / n, r["cpu_seconds"] * 60_000 / n
        out.append((label, row))
    return out


def main(argv=None) -> int:
    """`coursekit bench [--quick] [--device D]`: print the speed tables (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="coursekit bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: gvlib.get_device())")
    parser.add_argument("--quick", action="store_true",
                        help="time 100 of the 1,000 inputs and a tenth of the epoch, and extrapolate")
    parser.add_argument("--no-data-parallel", action="store_true", help="skip the 1- and 2-process training rows")
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fit-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _estimate_child(*args.child)
        return 0
    if args.fit_child:
        _fit_child(int(args.fit_child[0]), int(args.fit_child[1]), args.fit_child[2])
        return 0

    device = get_device(args.device)
    cuda = device.type == "cuda"
    n_inputs = CUDA_INPUTS if cuda else N_INPUTS
    configs = CUDA_CONFIGS if cuda else CONFIGS
    n_timed = n_inputs // 10 if args.quick else n_inputs
    n_ref = 3 if args.quick else 10
    tuned = all(os.environ.get(k) == v for k, v in MALLOC_TUNED.items())
    print(f"coursekit bench on {device} ({torch.__version__}, {torch.get_num_threads()} threads; training rows "
          f"with malloc {'as the Makefile sets it' if tuned else 'as glibc comes'})"
          f"{' --quick' if args.quick else ''}")
    model, x = _model_and_data(device, n_inputs)
    what = f"{n_inputs:,} random binary inputs"
    if cuda:
        x, what = test_images(device, n_inputs)
        print(f"GPU: {torch.cuda.get_device_name(device)}, {torch.cuda.device_count()} visible; TF32 matmul "
              f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}")
    macs = decoder_macs(model)
    flops = 2 * macs * K * n_inputs
    mm_n = 8192 if cuda else 4096
    rate = matmul_gflops(device, n=mm_n)
    cpu_rate = matmul_gflops(device, cpu_time=True) if device.type == "cpu" else None
    floor_s = flops / (rate * 1e9)
    print(f"float32 matmul {mm_n}^2: {rate:.1f} GFLOP/s; decoder {macs:,} multiply-adds per sample, "
          f"k x inputs = {K} x {n_inputs}: {flops / 1e12:.2f} TFLOP")
    print()
    print(f"estimate_log_likelihood, k={K}, {what}"
          + (f" (timed on {n_timed}, scaled x{n_inputs // n_timed})" if n_timed < n_inputs else ""))
    print("| method | seconds | inputs/s | peak memory | decoder GFLOP/s | vs matmul | vs matmul, CPU time |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    mallocs = ("default", "untouched") if device.type == "cpu" and os.path.exists("/proc/self/clear_refs") else (None,)
    for chunk, bs in configs:
        for malloc in mallocs:
            rate_before = matmul_gflops(device, n=mm_n, repeats=3)
            dt, mem, cpu_s = (time_and_memory(device, chunk, bs, n_timed, malloc or "default") if not cuda
                              else _time_on(model, x[:n_timed], chunk, bs, device))
            rate_after = matmul_gflops(device, n=mm_n, repeats=3)
            dt *= n_inputs / n_timed
            mm = max(rate, rate_before, rate_after)  # the fastest the machine did in this run: a conservative ratio
            achieved = flops / dt / 1e9
            cpu_ratio = None
            if cpu_s:
                cpu_ratio = flops / (cpu_s * n_inputs / n_timed) / 1e9 / cpu_rate
            label = f"library, chunk={chunk} x batch_size={bs}" + (", malloc as glibc comes" if malloc == "untouched" else "")
            rows.append((label, dt, mem, achieved, achieved / mm, cpu_ratio))
    ref_dt, _ = _timed(lambda: reference_log_likelihood(model, x[:n_ref]), device)
    ref_dt *= n_inputs / n_ref
    rows.append((f"reference: loop over inputs, encoder per sample (timed on {n_ref}, extrapolated)",
                 ref_dt, None, flops / ref_dt / 1e9, flops / ref_dt / 1e9 / rate, None))
    rows.append(("floor: decoder FLOPs / matmul rate", floor_s, None, rate, 1.0, None))
    for name, dt, mem, achieved, ratio, cpu_ratio in rows:
        mem_s = "-" if mem is None else f"{mem:.0f} MiB"
        cpu_s = "-" if cpu_ratio is None else f"{cpu_ratio:.2f}"
        print(f"| {name} | {dt:.1f} | {n_inputs / dt:.1f} | {mem_s} | {achieved:.1f} | {ratio:.2f} | {cpu_s} |")
    print()
    frac = 0.1 if args.quick else 1.0
    print("one training epoch, 60,000 inputs of 784, batch 100, Adam, loss -L_k"
          + (" (a tenth of the batches timed, scaled x10)" if args.quick else ""))
    print("| k | seconds per epoch |")
    print("| ---: | ---: |")
    for k in (1, 50):
        print(f"| {k} | {train_epoch_seconds(device, k, fraction=frac):.1f} |")
    print()
    if not args.no_data_parallel:
        print("one training epoch through gvlib.train.fit, 1 and 2 processes (torchrun), 60,000 inputs of 784, global "
              f"batch {DP_BATCH}, Adam, loss -L_k" + (" (a tenth of the epoch timed, scaled x10)" if args.quick else ""))
        print("| processes | k=1 s/epoch | k=50 s/epoch | k=1 CPU s | k=50 CPU s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for label, row in data_parallel_rows(device, frac):
            print(f"| {label} | {row[1]:.1f} | {row[50]:.1f} | {row['1_cpu']:.1f} | {row['50_cpu']:.1f} |")
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
