"""gvlib.experiments.iwae_table: the Table 1 command on tiny budgets (seconds): outputs, resuming, bad arguments."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import gvlib
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
        assert m["nll"] > 0 and len(m["active"]) == m["layers"] and m["seed"] == 0
        assert m["device"] == str(gvlib.get_device())  # cuda on a machine with a GPU
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


# ------------------------------------------------------------------------------------------------ one model per job
JOB = ["--dataset", "digits", "--k", "1", "2", "--layers", "1", *TINY]


def test_only_argument_and_select_models():
    assert iwae_table.only_argument("7") == 7
    assert iwae_table.only_argument("layers=2, k=50,objective=iwae") == {"layers": 2, "k": 50, "objective": "iwae"}
    for bad in ("layers", "k=", "=3", ","):
        with pytest.raises(ValueError, match="--only"):
            iwae_table.only_argument(bad)
    specs = iwae_table.model_specs([1, 5], [1, 2])
    assert [s["name"] for s in iwae_table.select_models(specs, {"layers": 2, "k": 5, "objective": "iwae"})] == [
        "L2_k5_iwae"]
    # the k = 1 model is the VAE and the IWAE: either objective picks it
    assert [s["name"] for s in iwae_table.select_models(specs, {"layers": 1, "k": 1, "objective": "vae"})] == [
        "L1_k1_vae_iwae"]
    assert len(iwae_table.select_models(specs, {"layers": 2})) == 3  # a partial key picks several
    assert iwae_table.select_models(specs, 3) == [specs[3]]
    with pytest.raises(ValueError, match="there are 6 models, 0 to 5"):
        iwae_table.select_models(specs, 6)
    with pytest.raises(ValueError, match="unknown key seeds; a model is picked by k, layers, objective"):
        iwae_table.select_models(specs, {"seeds": 1})
    with pytest.raises(ValueError, match="picks none of the 6 models"):
        iwae_table.select_models(specs, {"k": 50})


def test_list_prints_one_job_per_line(capsys):
    assert main([*JOB, "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["0\t--only layers=1,k=1,objective=vae=iwae\tL1_k1_vae_iwae",
                     "1\t--only layers=1,k=2,objective=vae\tL1_k2_vae",
                     "2\t--only layers=1,k=2,objective=iwae\tL1_k2_iwae"]


def test_jobs_then_collect_give_the_table_of_one_run(tmp_path, capsys):
    assert main([*JOB, "--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "table.json").read_text())
    # three jobs, as a job array would run them: each writes its own part and no table
    for index in range(3):
        assert main([*JOB, "--out", str(tmp_path / "jobs"), "--only", str(index)]) == 0
    assert sorted(p.name for p in (tmp_path / "jobs" / "models").iterdir()) == [
        "L1_k1_vae_iwae.json", "L1_k2_iwae.json", "L1_k2_vae.json"]
    assert not (tmp_path / "jobs" / "table.json").exists()
    part = json.loads((tmp_path / "jobs" / "models" / "L1_k2_iwae.json").read_text())
    assert part["settings"]["eval_k"] == 10 and part["hardware"]["device"] == str(gvlib.get_device())
    assert main([*JOB, "--out", str(tmp_path / "jobs"), "--collect"]) == 0
    collected = json.loads((tmp_path / "jobs" / "table.json").read_text())
    assert collected["rows"] == whole["rows"]  # the same models, trained from the same seed: the same numbers
    assert "| 1 | 2 |" in (tmp_path / "jobs" / "table.md").read_text()
    assert "VAE NLL" in capsys.readouterr().out


def test_collect_gathers_parts_from_other_machines_folders(tmp_path):
    # two machines, each with its own --out; the table is assembled in a third folder
    assert main([*JOB, "--out", str(tmp_path / "a"), "--only", "layers=1,k=1"]) == 0
    assert main([*JOB, "--out", str(tmp_path / "b"), "--only", "k=2"]) == 0  # two models in one job
    assert main([*JOB, "--out", str(tmp_path / "t"), "--collect", str(tmp_path / "a"),
                 str(tmp_path / "b" / "models")]) == 0
    table = json.loads((tmp_path / "t" / "table.json").read_text())
    assert [m["name"] for m in table["models"]] == ["L1_k1_vae_iwae", "L1_k2_vae", "L1_k2_iwae"]
    assert len(list((tmp_path / "t" / "models").glob("*.json"))) == 3  # copied in, so --collect works again
    assert table["trained_on"] and "Trained on" not in (tmp_path / "t" / "table.md").read_text()  # all here


def test_collect_refuses_parts_made_with_other_settings(tmp_path, capsys):
    assert main([*JOB, "--out", str(tmp_path / "a"), "--only", "0"]) == 0
    other = list(JOB)
    other[other.index("--eval-k") + 1] = "20"
    assert main([*other, "--out", str(tmp_path / "b"), "--only", "1"]) == 0
    assert main([*JOB, "--out", str(tmp_path / "b2"), "--only", "2"]) == 0
    capsys.readouterr()
    rc = main([*JOB, "--out", str(tmp_path / "t"), "--collect", str(tmp_path / "a"), str(tmp_path / "b"),
               str(tmp_path / "b2")])
    err = capsys.readouterr().err
    assert rc == 2 and "L1_k2_vae) was made with other settings: eval_k: 20 there, 10 here" in err
    assert not (tmp_path / "t" / "table.json").exists()


def test_collect_names_the_missing_models_and_their_jobs(tmp_path, capsys):
    assert main([*JOB, "--out", str(tmp_path / "run"), "--only", "1"]) == 0
    capsys.readouterr()
    assert main([*JOB, "--out", str(tmp_path / "run"), "--collect"]) == 2
    err = capsys.readouterr().err
    assert "2 of 3 models have no part yet" in err
    assert "L1_k1_vae_iwae (--only layers=1,k=1,objective=vae=iwae)" in err and "L1_k2_iwae" in err
    assert not (tmp_path / "run" / "table.json").exists()


def test_collect_refuses_two_different_parts_of_one_model(tmp_path, capsys):
    assert main([*JOB, "--out", str(tmp_path / "a"), "--only", "0"]) == 0
    part = json.loads((tmp_path / "a" / "models" / "L1_k1_vae_iwae.json").read_text())
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "L1_k1_vae_iwae.json").write_text(json.dumps({**part, "nll": part["nll"] + 1}))
    capsys.readouterr()
    assert main([*JOB, "--out", str(tmp_path / "t"), "--collect", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "two different parts for L1_k1_vae_iwae" in capsys.readouterr().err


@pytest.mark.parametrize("argv, env, message", [
    (["--only", "3"], {}, "there are 3 models, 0 to 2"),
    (["--only", "objective=gan"], {}, "picks none of the 3 models"),
    (["--only", "0", "--collect"], {}, "separate steps"),
    ([], {"WORLD_SIZE": "2"}, "one --only job per GPU"),
])
def test_job_arguments_that_cannot_work_exit_with_a_clear_message(tmp_path, capsys, monkeypatch, argv, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as e:
        main([*JOB, "--out", str(tmp_path / "x"), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


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


def test_seeds_as_jobs_then_collect_give_the_table_of_one_run(tmp_path, capsys):
    job = [*JOB, "--seeds", "0", "1"]
    assert main([*job, "--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "table.json").read_text())
    capsys.readouterr()
    assert main([*job, "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and lines[1].split("\t")[1] == "--only layers=1,k=1,objective=vae=iwae,seed=1"
    for index in range(6):
        assert main([*job, "--out", str(tmp_path / "jobs"), "--only", str(index)]) == 0
    assert main([*job, "--out", str(tmp_path / "jobs"), "--only", "seed=0"]) == 0  # finished parts are skipped
    assert main([*job, "--out", str(tmp_path / "jobs"), "--collect"]) == 0
    collected = json.loads((tmp_path / "jobs" / "table.json").read_text())
    assert collected["rows"] == whole["rows"] and collected["seeds"] == [0, 1]
    assert len(set(collected["rows"][1]["vae_nll_seeds"])) == 2
