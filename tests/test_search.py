"""qsparse sensitivity and search end to end on a tiny random Llama (the stories260K tokenizer), the cost model
against hand-computed figures, and the lm-eval wrapper (a monkeypatched evaluator, and lm-eval itself on a local
text task) against a computation written here."""
import copy
import csv
import json
import math
import os

import pytest
import torch
import yaml

pytest.importorskip("transformers")

import qsparse  # noqa: E402
from qsparse.cli import main  # noqa: E402

from shared_data import STORIES, TEXT, needs_data  # noqa: E402
from shared_data import direct_ppl as _direct_ppl  # noqa: E402

SEQLEN, WINDOWS = 32, 3


def direct_ppl(model, ids, seqlen=SEQLEN, windows=WINDOWS):
    return _direct_ppl(model, ids, seqlen, windows)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(folder, model, tokenizer, text ids): a 3-layer random Llama saved with the stories260K tokenizer."""
    from hf_models import tiny_model
    from qsparse.models import load_llama2c

    _, tok = load_llama2c(os.path.join(STORIES, "stories260K.bin"), os.path.join(STORIES, "tok512.bin"))
    model = tiny_model("llama", layers=3, vocab=512)
    folder = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    with open(TEXT, encoding="utf-8") as f:
        ids = tok(f.read(), return_tensors="pt").input_ids[0]
    return str(folder), model, tok, ids


def config(tmp_path, folder, **extra):
    cfg = {"name": "tiny", "model": folder,
           "evaluation": {"perplexity": {"dataset": TEXT, "seqlen": SEQLEN, "max_windows": WINDOWS, "batch_size": 2}},
           **extra}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


# ---- sensitivity -------------------------------------------------------------------------------------------------

SEED = {"sparsity_num_format": "bfp", "a_num_format": "fp", "a_mant_bits": 16, "w_num_format": "int",
        "w_mant_bits": 4, "block_size": 16, "w_sparsity": True, "N": 2, "M": 4, "first": "s",
        "sparsity_mode": "structured", "sparsify": True}


@needs_data
def test_sensitivity_table_heatmap_and_resume(tmp_path, tiny, monkeypatch):
    folder, model, _, ids = tiny
    comp = {"hbfp": {"up_proj": [{"layer_ids": "all", **SEED}], "down_proj": [{"layer_ids": "all", **SEED, "N": 1}]}}
    path = config(tmp_path, folder, compression=comp)
    out = tmp_path / "sens"
    args = ["--log-level", "ERROR", "sensitivity", path, "--layer-types", "up_proj,down_proj", "--layer-ids", "0,2",
            "--output-dir", str(out), "--no-progress"]
    assert main(args) == 0
    base = direct_ppl(model, ids)
    with open(out / "sensitivity.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["layer_type"], int(r["layer"])) for r in rows] == [("up_proj", 0), ("up_proj", 2), ("down_proj", 0),
                                                                  ("down_proj", 2)]
    for r in rows:  # each cell: that one layer compressed, the rest dense
        keys = {**SEED, "N": 1} if r["layer_type"] == "down_proj" else SEED
        m = qsparse.patch_model(copy.deepcopy(model), {r["layer_type"]: [{"layer_ids": [int(r["layer"])], **keys}]})
        expected = direct_ppl(m, ids)
        assert float(r["ppl"]) == pytest.approx(expected, rel=1e-5)
        assert float(r["delta"]) == pytest.approx(expected - base, rel=1e-4, abs=1e-5)
    assert (out / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # resumed: nothing is evaluated again; a new layer only adds its cells
    import qsparse.run as run_mod

    calls = []
    real = run_mod.evaluate_perplexity
    monkeypatch.setattr(run_mod, "evaluate_perplexity", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(args) == 0 and calls == []
    args[args.index("0,2")] = "0,1,2"
    assert main(args) == 0 and len(calls) == 2
    state = json.loads((out / "sensitivity.json").read_text())
    assert len(state["cells"]) == 6


# ---- search ------------------------------------------------------------------------------------------------------


def expected_bits(entry) -> float:
    """Bits per weight by hand (docs/models.md): kept elements, fp16 scale + zero point per group of 16, and
    ceil(log2 4) = 2 index bits per kept element at 2:4; a dense fp32 weight is 32 bits."""
    w = entry.get("weight")
    elem, over = (32.0, 0.0) if w is None else ({"int4_asym": 4, "int8_asym": 8}[w["name"]],
                                                (16 + {"int4_asym": 4, "int8_asym": 8}[w["name"]]) / 16)
    if entry.get("sparsity") == "2:4":
        return 0.5 * elem + over + 0.5 * 2
    return elem + over


def search_config(tmp_path, folder, **search):
    sec = {"granularity": "block", "layer_types": ["up_proj", "down_proj"],
           "space": {"weight": ["int{bits}_asym", "none"], "bits": [4, 8], "group_size": [16],
                     "sparsity": ["dense", "2:4"]},
           "objectives": ["perplexity", "bits_per_weight", "throughput"], "mode": "pareto", "sampler": "random",
           "n_trials": 3, "seed": 0, **search}
    return config(tmp_path, folder, search=sec)


def dominated(a, b, directions):
    """b dominates a."""
    better = [(y <= x) if d == "minimize" else (y >= x) for x, y, d in zip(a, b, directions)]
    strictly = [(y < x) if d == "minimize" else (y > x) for x, y, d in zip(a, b, directions)]
    return all(better) and any(strictly)


@needs_data
def test_search_pareto_best_config_and_resume(tmp_path, tiny):
    folder, model, _, ids = tiny
    out = tmp_path / "search"
    args = ["--log-level", "ERROR", "search", search_config(tmp_path, folder), "--output-dir", str(out),
            "--no-progress"]
    assert main(args) == 0
    trials = json.loads((out / "trials.json").read_text())
    pareto = json.loads((out / "pareto.json").read_text())
    assert len(trials) == 3 and (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    for t in trials:  # the metrics of every trial, recomputed here
        m = qsparse.patch_model(copy.deepcopy(model), t["compression"]) if t["compression"] else copy.deepcopy(model)
        assert t["metrics"]["perplexity"] == pytest.approx(direct_ppl(m, ids), rel=1e-5)
        per_type = []
        for lt in ("up_proj", "down_proj"):  # same size: the mean over modules is the mean over types
            entries = t["compression"].get(lt, [{}])
            per_type.append(expected_bits(entries[0]))
        assert t["metrics"]["bits_per_weight"] == pytest.approx(sum(per_type) / 2)
    keys = pareto["objectives"]
    vals = {t["number"]: [t["metrics"][k] for k in keys] for t in trials}
    front = [p["number"] for p in pareto["front"]]
    for n, v in vals.items():  # the front is exactly the non-dominated trials
        assert (n in front) == (not any(dominated(v, w, pareto["directions"]) for m_, w in vals.items() if m_ != n))
    # best_run.yaml runs and reproduces the best trial's perplexity
    best = next(t for t in trials if t["number"] == pareto["best"])
    assert yaml.safe_load((out / "best_layers.yaml").read_text()) == best["compression"]
    run_out = tmp_path / "best"
    assert main(["--log-level", "ERROR", "run", str(out / "best_run.yaml"), "--output-dir", str(run_out),
                 "--no-progress"]) == 0
    res = json.loads((run_out / "results.json").read_text())
    assert res["evaluation"]["perplexity"][0]["ppl"] == pytest.approx(best["metrics"]["perplexity"], rel=1e-9)
    # resumed from study.db: the first three trials are kept, two more run
    assert main(args + ["--n-trials", "5"]) == 0
    again = json.loads((out / "trials.json").read_text())
    assert len(again) == 5 and again[:3] == trials


@needs_data
@pytest.mark.parametrize("sampler, extra", [("tpe", {}), ("nsga2", {}), ("nsga3", {}), ("qmc", {}),
                                            ("grid", {"granularity": "model", "layer_types": ["down_proj"]}),
                                            ("random", {"mode": "weighted", "granularity": "layer",
                                                        "layer_types": ["down_proj"],
                                                        "weights": {"perplexity": 1.0, "bits_per_weight": 2.0,
                                                                    "throughput": 0.5}})])
def test_samplers_and_granularities(tmp_path, tiny, sampler, extra):
    folder, _, _, _ = tiny
    out = tmp_path / "s"
    n = 2 if extra else 1
    if sampler == "grid":
        extra = {**extra, "space": {"weight": ["int4_asym", "none"], "group_size": [16], "sparsity": ["dense"]}}
        n = 100  # capped at the 2 combinations
    assert main(["--log-level", "ERROR", "search", search_config(tmp_path, folder, sampler=sampler, **extra),
                 "--output-dir", str(out), "--no-progress", "--n-trials", str(n)]) == 0
    trials = json.loads((out / "trials.json").read_text())
    assert len(trials) == max(n if n < 100 else 2, 1)
    if sampler == "grid":
        assert sorted(json.dumps(t["compression"], sort_keys=True) for t in trials) == sorted(
            [json.dumps({}), json.dumps({"down_proj": [{"layer_ids": "all", "weight": {"name": "int4_asym",
                                                                                       "group_size": 16}}]},
                                        sort_keys=True)])
    if extra.get("mode") == "weighted":
        from qsparse.search.optuna_search import weighted_score

        for t in trials:
            m = t["metrics"]
            assert t["values"] == [pytest.approx(math.log(m["perplexity"]) + 2.0 * m["bits_per_weight"] / 16
                                                 - 0.5 * math.log(m["throughput"]))]
            assert t["values"][0] == pytest.approx(weighted_score(m, extra["weights"], list(m)))
        # per-layer granularity: one choice per decoder index
        assert all(k.startswith("down_proj.") for k in trials[0]["params"])
        assert {k.split(":")[0] for k in trials[0]["params"]} == {"down_proj.0", "down_proj.1", "down_proj.2"}


def test_search_config_errors(tmp_path, capsys):
    folder = str(tmp_path)
    for sec, msg in [({"sampler": "cmaes"}, "sampler='cmaes'"), ({"space": {"weight": ["int99"]}}, "int99"),
                     ({"objectives": ["speed"]}, "objectives=['speed']"), ({"granularity": "row"}, "granularity")]:
        assert main(["search", config(tmp_path, folder, search=sec), "--output-dir", str(tmp_path / "o")]) == 2
        assert msg in capsys.readouterr().err


# ---- the cost model ----------------------------------------------------------------------------------------------


def test_cost_model_hand_computed():
    from qsparse.search.cost import bits_per_weight, layer_costs, throughput

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32))
    qsparse.patch_model(model, {"config_groups": {"g": {"targets": ["Linear"], "sparsity": "2:4",
                                                        "weight": {"name": "int4_asym", "group_size": 16},
                                                        "activation": "fp8_e4m3"}}})
    p = {"tokens": 10, "peak_tflops": 1.0, "bandwidth_gbs": 1.0, "min_bits": 4}
    c = layer_costs(model, **p)["0"]
    assert c.ops == 2 * 10 * 32 * 64 * 0.5
    bits = 0.5 * 4 + 20 / 16 + 0.5 * 2  # 4.25
    assert bits_per_weight(model) == pytest.approx(bits)
    assert c.bytes == pytest.approx(32 * 64 * bits / 8 + 10 * 64 * 8 / 8 + 10 * 32 * 2)
    compute = c.ops / (1e12 * 16 / 8)  # the widest operand is the 8-bit input
    assert c.seconds == pytest.approx(max(compute, c.bytes / 1e9))
    assert throughput(model, **p) == pytest.approx(10 / c.seconds)
    dense = torch.nn.Sequential(torch.nn.Linear(64, 32))
    d = layer_costs(dense, **{**p, "bandwidth_gbs": 1e9})["0"]  # compute bound: fp32 at half the 16-bit rate
    assert d.seconds == pytest.approx(2 * 10 * 32 * 64 / (1e12 * 16 / 32))
    with pytest.raises(ValueError, match="tokens"):
        layer_costs(dense, tokens=0)


# ---- lm-eval -----------------------------------------------------------------------------------------------------


@needs_data
def test_lm_eval_wrapper(tmp_path, tiny):
    pytest.importorskip("lm_eval")
    from qsparse.eval.harness import documents, lm_eval_tasks

    folder, model, tok, _ = tiny
    seen = {}

    def fake_evaluate(model, tasks, task_manager, limit, num_fewshot):
        seen.update(lm=model, tasks=tasks, limit=limit, fewshot=num_fewshot)
        seen["has_text_task"] = "qsparse_text" in task_manager.all_tasks
        return {"results": {t: {"alias": t, "word_perplexity,none": 12.5, "acc,none": 0.25,
                                "acc_stderr,none": 0.01} for t in tasks}}

    rows = ["Intro line\n", " = Alpha = \n", "alpha text\n", " = Beta = \n", "beta text\n"]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps({"text": r}) + "\n" for r in rows))
    assert documents(rows) == ["Intro line\n", " = Alpha = \n\n\nalpha text\n", " = Beta = \n\n\nbeta text\n"]
    patched = qsparse.patch_model(copy.deepcopy(model), {"down_proj": [{"layer_ids": "all", "weight": "int4"}]})
    out = lm_eval_tasks(patched, tok, ["piqa"], limit=3, num_fewshot=0, text=str(src), evaluator=fake_evaluate)
    assert seen["lm"].model is patched  # HFLM wraps the patched model itself
    assert seen["tasks"] == ["piqa", "qsparse_text"] and seen["limit"] == 3 and seen["has_text_task"]
    assert out["results"]["piqa"] == {"word_perplexity": 12.5, "acc": 0.25, "acc_stderr": 0.01}
    with pytest.raises(ValueError, match="tasks"):
        lm_eval_tasks(patched, tok, [], evaluator=fake_evaluate)

    # lm-eval itself, offline, on a two-document local text: its word perplexity against log-likelihoods computed
    # here: one window per document (they are short), lm-eval's prefix token (BOS) followed by the document as the
    # tokenizer encodes it (with its own BOS), every token after the prefix scored.
    docs = ["Once upon a time there was a cat.", "The cat sat on the mat and looked at the sun."]
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    out = lm_eval_tasks(model, tok, [], text=str(src), batch_size=1)
    r = out["results"]["qsparse_text"]
    ll = 0.0
    with torch.no_grad():
        for d in docs:
            ids = [tok.bos_token_id] + tok(d).input_ids
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
            ll += sum(logp[i - 1, ids[i]].item() for i in range(1, len(ids)))
    words = sum(len(d.split()) for d in docs)
    assert r["word_perplexity"] == pytest.approx(math.exp(-ll / words), rel=1e-4)
    assert r["byte_perplexity"] == pytest.approx(math.exp(-ll / sum(len(d.encode()) for d in docs)), rel=1e-4)


@needs_data
def test_lm_eval_accuracy_objective(tmp_path, tiny, monkeypatch):
    import qsparse.eval.harness as harness

    folder, _, _, _ = tiny
    calls = []

    def fake(model, tok, **spec):  # accuracy falls with the number of quantized modules: checks the plumbing
        calls.append(spec)
        n = len(qsparse.integrations.patched_modules(model))
        return {"results": {spec["tasks"][0]: {"acc": 1.0 / (1 + n)}}}

    monkeypatch.setattr(harness, "lm_eval_tasks", fake)
    path = search_config(tmp_path, folder, objectives=["lm_eval:piqa:acc", "bits_per_weight"])
    out = tmp_path / "s"
    assert main(["--log-level", "ERROR", "search", path, "--output-dir", str(out), "--no-progress", "--n-trials",
                 "2", "evaluation.lm_eval={tasks: [piqa], limit: 5}"]) == 0
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["directions"] == ["maximize", "minimize"]
    assert calls and all(c["tasks"] == ["piqa"] and c["limit"] == 5 for c in calls)
    for t in json.loads((out / "trials.json").read_text()):
        n = sum(len(e["layer_ids"]) if e["layer_ids"] != "all" else 3 for es in t["compression"].values() for e in es)
        assert t["metrics"]["lm_eval:piqa:acc"] == pytest.approx(1.0 / (1 + n))
