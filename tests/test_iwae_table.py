"""gvlib.experiments.iwae_table: the Table 1 command on tiny budgets (seconds): outputs, resuming, bad arguments."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gvlib.experiments import iwae_table
from gvlib.experiments.iwae_table import main

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
TINY = ["--epochs", "1", "--limit", "100", "--eval-n", "20", "--eval-k", "10", "--quiet"]


def tiny_digits(out, *extra):
    return main(["--dataset", "digits", "--k", "1", "2", "--layers", "1", "2", "--out", str(out), *TINY, *extra])


def test_tiny_run_writes_json_and_markdown(tmp_path, capsys):
    assert tiny_digits(tmp_path / "run") == 0
    table = json.loads((tmp_path / "run" / "table.json").read_text())
    # VAE and IWAE for k = 2, one shared model for k = 1, per number of layers
    assert sorted(m["name"] for m in table["models"]) == sorted(
        ["L1_k1_vae_iwae", "L1_k2_vae", "L1_k2_iwae", "L2_k1_vae_iwae", "L2_k2_vae", "L2_k2_iwae"])
    assert [(r["layers"], r["k"]) for r in table["rows"]] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for m in table["models"]:
        assert m["nll"] > 0 and len(m["active"]) == m["layers"] and m["seed"] == 0 and m["device"] == "cpu"
        assert m["train_seconds"] >= 0 and m["eval_seconds"] >= 0
    k1 = table["rows"][0]
    paper_k1 = iwae_table.PAPER_TABLE1[(1, 1)]["vae"][0]
    assert k1["vae_nll"] == k1["iwae_nll"] and k1["paper_vae_nll"] == paper_k1  # k = 1: one model, both columns
    assert table["rows"][1]["paper_vae_nll"] is None  # k = 2 is not in the paper
    assert table["command"].startswith("python -m gvlib.experiments.iwae_table --dataset digits")
    assert table["hardware"]["cpu_count"] >= 1 and table["settings"]["eval_k"] == 10
    md = (tmp_path / "run" / "table.md").read_text()
    assert "| # stoch. layers | k | VAE NLL (paper) |" in md and f"({paper_k1})" in md and "(16+5)" in md
    assert md.count("\n| 1 |") == 2 and md.count("\n| 2 |") == 2
    assert "VAE NLL" in capsys.readouterr().out


def test_second_run_skips_finished_models(tmp_path):
    out = tmp_path / "run"
    assert tiny_digits(out) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "models").glob("*.json")}
    logs = []
    table = iwae_table.run("digits", 1, [1, 2], [1, 2], out, eval_k=10, eval_n=20, limit=100, progress=False,
                           log=logs.append)
    assert sum("skipped" in line for line in logs) == 6
    assert {p.name: p.stat().st_mtime_ns for p in (out / "models").glob("*.json")} == stamps
    assert len(table["models"]) == 6


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    args = dict(dataset="digits", epochs=2, ks=[1, 3], layers=[1], eval_k=10, eval_n=20, limit=60, progress=False,
                log=lambda s: None)
    straight = iwae_table.run(out=tmp_path / "straight", **args)

    real_evaluate = iwae_table.evaluate
    calls = []

    def crash_on_second(*a, **kw):  # the second model dies after training, before its result is written
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*a, **kw)

    monkeypatch.setattr(iwae_table, "evaluate", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        iwae_table.run(out=tmp_path / "broken", **args)
    monkeypatch.setattr(iwae_table, "evaluate", real_evaluate)
    assert len(list((tmp_path / "broken" / "models").glob("*.json"))) == 1
    resumed = iwae_table.run(out=tmp_path / "broken", **args)
    by_name = {m["name"]: m for m in resumed["models"]}
    assert by_name["L1_k3_vae"]["resumed"] is True
    for m in straight["models"]:
        assert by_name[m["name"]]["nll"] == pytest.approx(m["nll"], abs=1e-9), m["name"]
        assert by_name[m["name"]]["active"] == m["active"]


@pytest.mark.parametrize("argv, message", [
    (["--k", "0"], "k must be distinct positive ints"),
    (["--k", "5", "5"], "k must be distinct positive ints"),
    (["--layers", "3"], "layers must be 1 and/or 2"),
    (["--epochs", "0"], "epochs must be a positive int"),
    (["--eval-k", "0"], "eval_k must be a positive int"),
    (["--eval-n", "1"], "eval_n must be at least 2"),
    (["--limit", "-3"], "limit must be a positive int"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--data-root", "/nonexistent/folder"], "is not a folder"),
])
def test_bad_arguments_exit_with_a_clear_message(tmp_path, capsys, argv, message):
    base = ["--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "x"), "--quiet"]
    with pytest.raises(SystemExit) as e:
        main(base + argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_unknown_dataset_and_missing_required(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--dataset", "cifar", "--epochs", "1"])
    assert e.value.code == 2 and "invalid choice: 'cifar'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--dataset", "digits"])
    assert "--epochs" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_asked_for_without_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--dataset", "digits", "--epochs", "1", "--device", "cuda", "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "torch.cuda.is_available() is False" in capsys.readouterr().err


def test_other_settings_in_the_same_folder_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--dataset", "digits", "--k", "1", "--layers", "1", "--out", str(out), *TINY]) == 0
    argv = ["--dataset", "digits", "--k", "1", "--layers", "1", "--out", str(out), *TINY]
    argv[argv.index("--eval-k") + 1] = "20"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "eval_k: 10 there, 20 now" in err


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["--dataset", "binarized_mnist", "--data-root", str(tmp_path / "empty"), "--no-download",
               "--out", str(tmp_path / "run"), *TINY])
    assert rc == 2
    err = capsys.readouterr().err
    assert "binarized_mnist_train.amat" in err and "download" in err


@pytest.mark.skipif(not (SHARED_DATA / "binarized_mnist").is_dir(),
                    reason=f"no fixed binarized MNIST in {SHARED_DATA / 'binarized_mnist'}")
def test_tiny_run_on_binarized_mnist(tmp_path):
    out = tmp_path / "bm"
    rc = main(["--dataset", "binarized_mnist", "--data-root", str(SHARED_DATA), "--no-download", "--k", "1", "5",
               "--layers", "1", "--out", str(out), "--epochs", "1", "--limit", "200", "--eval-n", "20",
               "--eval-k", "10", "--quiet"])
    assert rc == 0
    table = json.loads((out / "table.json").read_text())
    assert [m["name"] for m in table["models"]] == ["L1_k1_vae_iwae", "L1_k5_vae", "L1_k5_iwae"]
    assert all(m["n_params"] > 300_000 for m in table["models"])  # the paper's 784-200-200-50 network
    rows = table["rows"]
    assert rows[0]["paper_iwae_nll"] == 88.71 and rows[1]["paper_iwae_nll"] == 87.63
    assert rows[1]["paper_vae_nll"] is None  # the appendix reports IWAE only
    assert "fixed binarization" in table["reference"]
    assert "(88.71)" in (out / "table.md").read_text()


def test_the_papers_table_has_the_papers_own_structure():
    # Properties Burda et al. state of their Table 1, so a mistyped entry fails: at k = 1 the VAE and IWAE objectives
    # are the same, so their columns agree; for k > 1 the IWAE is better (lower NLL, more active units); the IWAE's NLL
    # falls with k; two layers beat one at every (k, objective).
    t = iwae_table.PAPER_TABLE1
    units = lambda s: sum(int(u) for u in s.split("+"))  # noqa: E731
    for layers in (1, 2):
        assert t[(layers, 1)]["vae"] == t[(layers, 1)]["iwae"]
        for k in (5, 50):
            assert t[(layers, k)]["iwae"][0] < t[(layers, k)]["vae"][0]
            assert units(t[(layers, k)]["iwae"][1]) > units(t[(layers, k)]["vae"][1])
        assert t[(layers, 1)]["iwae"][0] > t[(layers, 5)]["iwae"][0] > t[(layers, 50)]["iwae"][0]
    for k in (1, 5, 50):
        for objective in ("vae", "iwae"):
            assert t[(2, k)][objective][0] < t[(1, k)][objective][0]
    fixed = iwae_table.PAPER_FIXED_BINARIZATION
    assert fixed[(1, 1)]["iwae"][0] > fixed[(1, 5)]["iwae"][0] > fixed[(1, 50)]["iwae"][0]


def test_stored_tables_reads_the_repositorys_results(tmp_path):
    assert iwae_table.stored_tables(tmp_path / "absent") == []
    (tmp_path / "iwae_table_toy.json").write_text(json.dumps({"rows": [], "command": "x"}))
    (tmp_path / "other.json").write_text("{}")
    assert [(p.name, t["command"]) for p, t in iwae_table.stored_tables(tmp_path)] == [("iwae_table_toy.json", "x")]
    shipped = iwae_table.stored_tables(REPO / "results")  # the committed tables, each with its command and hardware
    assert shipped and all("command" in t and "hardware" in t and t["rows"] for _, t in shipped)


def test_seeds_train_every_model_per_seed_and_report_mean_and_se(tmp_path):
    out = tmp_path / "run"
    argv = ["--dataset", "digits", "--k", "1", "2", "--layers", "1", "--out", str(out), *TINY, "--seeds", "0", "1", "2"]
    assert main(argv) == 0
    table = json.loads((out / "table.json").read_text())
    names = sorted(m["name"] for m in table["models"])
    assert names == sorted(f"L1_{m}_s{s}" for m in ("k1_vae_iwae", "k2_vae", "k2_iwae") for s in (0, 1, 2))
    assert sorted(m["seed"] for m in table["models"] if m["name"].startswith("L1_k2_vae_")) == [0, 1, 2]
    assert table["seeds"] == [0, 1, 2] and table["settings"]["seeds"] == [0, 1, 2]
    row = table["rows"][1]
    per_seed = row["vae_nll_seeds"]
    mean, se = iwae_table.mean_and_se(per_seed)
    assert row["vae_nll"] == pytest.approx(sum(per_seed) / 3) and row["vae_nll_se"] == pytest.approx(se)
    assert se == pytest.approx((sum((v - mean) ** 2 for v in per_seed) / 2 / 3) ** 0.5)
    assert row["vae_seeds"] == [0, 1, 2] and len(row["vae_active_seeds"]) == 3
    assert "±" in row["vae_active"] and row["vae_active_mean"][0] == pytest.approx(
        sum(a[0] for a in row["vae_active_seeds"]) / 3)
    md = (out / "table.md").read_text()
    assert f"{row['vae_nll']:.2f} ± {row['vae_nll_se']:.2f}" in md and "once per seed (0, 1, 2)" in md
    # different seeds give different models (the seed reaches initialisation and data order)
    assert len(set(per_seed)) == 3
    # the same folder with other seeds is refused, like every other setting
    assert main(argv[:-4] + ["--seeds", "0", "1"]) == 2


def test_seed_and_seeds_together_or_repeated_seeds_are_refused(tmp_path, capsys):
    base = ["--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "x"), "--quiet"]
    with pytest.raises(SystemExit) as e:
        main(base + ["--seed", "3", "--seeds", "0", "1"])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(base + ["--seeds", "0", "0"])
    assert e.value.code == 2 and "seeds must be distinct ints" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_mean_and_se():
    assert iwae_table.mean_and_se([2.0]) == (2.0, None)
    mean, se = iwae_table.mean_and_se([1.0, 2.0, 3.0])
    assert mean == 2.0 and se == pytest.approx(1 / 3 ** 0.5)
    with pytest.raises(ValueError):
        iwae_table.mean_and_se([])


def test_the_shipped_digits_table_has_three_seeds_per_cell():
    table = json.loads((REPO / "results" / "iwae_table_digits.json").read_text())
    assert table["settings"]["seeds"] == [0, 1, 2] and table["settings"]["epochs"] == 100
    assert len(table["models"]) == 30
    for row in table["rows"]:
        for obj in ("vae", "iwae"):
            assert row[f"{obj}_seeds"] == [0, 1, 2] and row[f"{obj}_nll_se"] is not None
