"""coursekit bench's data-parallel rows: one report per process, collected however the processes interleave."""
from __future__ import annotations

import pytest
import torch

from coursekit import bench


@pytest.mark.parametrize("processes, torchrun", [(1, False), (2, True)])
def test_data_parallel_epoch_collects_one_report_per_process(processes, torchrun):
    n = 2 * bench.DP_BATCH  # one global batch per process at 2 processes
    r = bench.data_parallel_epoch(torch.device("cpu"), 1, processes, 1, n, torchrun)
    assert set(r) == {"seconds", "cpu_seconds"}
    assert 0 < r["seconds"] < 120 and r["cpu_seconds"] > 0
