"""The qsparse command end to end: run, eval, compress, describe on stories260K and on tiny random models, the
files they write and what is in them, checked against computations written here (the same windows, float64
log-softmax), and the error paths (exit status 2, one line, no traceback unless --debug)."""
import json
import os
import subprocess
import sys

import pytest
import yaml

pytest.importorskip("transformers")

import qsparse  # noqa: E402
from qsparse.cli import main  # noqa: E402
from qsparse.run import adapt_compression, apply_overrides, RunError  # noqa: E402

from shared_data import DATA, ROOT, STORIES, TEXT, direct_ppl, needs_data  # noqa: E402

CONFIGS = os.path.join(ROOT, "configs")


@pytest.fixture(scope="module")
def stories():
    from qsparse.models import load_llama2c

    return load_llama2c(os.path.join(STORIES, "stories260K.bin"), os.path.join(STORIES, "tok512.bin"))


@pytest.fixture(scope="module")
def text_ids(stories):
    _, tok = stories
    with open(TEXT, encoding="utf-8") as f:
        return tok(f.read(), return_tensors="pt").input_ids[0]


def write_config(path, cfg):
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


# ---- run -----------------------------------------------------------------------------------------------------------


@needs_data
def test_readme_config_runs_and_matches_a_direct_computation(tmp_path, stories, text_ids, capsys):
    out = tmp_path / "out"
    rc = main(["--log-level", "WARNING", "run", os.path.join(CONFIGS, "stories260K-inference.yaml"),
               "--output-dir", str(out), "--no-progress", "evaluation.perplexity.0.seqlen=128",
               "evaluation.perplexity.0.max_windows=3", f"data_dir={DATA}"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    text = (out / "results.txt").read_text()
    assert capsys.readouterr().out == text
    # the same model patched by hand with the config's compression, the same three windows of 128 tokens
    with open(os.path.join(CONFIGS, "stories260K-inference.yaml")) as f:
        comp = yaml.safe_load(f)["compression"]
    import copy

    model, _ = stories
    dense = direct_ppl(model, text_ids, 128, 3)
    patched = qsparse.patch_model(copy.deepcopy(model), comp)
    expected = direct_ppl(patched, text_ids, 128, 3)
    first = text.splitlines()[0]
    assert first.startswith("Perplexity: ")
    assert float(first.split()[1]) == pytest.approx(expected, rel=1e-5)  # %f prints 6 decimals
    assert res["evaluation"]["perplexity"][0]["ppl"] == pytest.approx(expected, rel=1e-6)
    assert res["baseline"]["perplexity"][0]["ppl"] == pytest.approx(dense, rel=1e-6)
    assert res["evaluation"]["perplexity"][0]["windows"] == 3
    # the Config: section is the per-layer YAML that was applied, in the seed's hbfp: wrapper
    dumped = yaml.safe_load(text.split("Config:\n", 1)[1])
    assert dumped == comp
    assert qsparse.load_config(dumped).to_dict() == qsparse.load_config(comp).to_dict()
    # summary bits: int4_asym g32 at 2:4 is 0.5*4 + (16+4)/32 + 0.5*2 = 3.625 bits per weight (docs/models.md)
    rows = {r["name"]: r for r in res["summary"]["rows"]}
    assert rows["model.layers.2.mlp.gate_proj"]["bits_per_weight"] == pytest.approx(3.625)
    assert rows["model.layers.0.mlp.gate_proj"]["bits_per_weight"] == 32


@needs_data
def test_failed_run_leaves_earlier_results(tmp_path):
    out = tmp_path / "out"
    args = ["--log-level", "ERROR", "run", os.path.join(CONFIGS, "stories260K-inference.yaml"), "--output-dir",
            str(out), "--no-progress", "evaluation.perplexity.0.seqlen=64", "evaluation.perplexity.0.max_windows=1",
            "evaluation.baseline=false", f"data_dir={DATA}"]
    assert main(args) == 0
    before = {p: (out / p).read_bytes() for p in ("results.txt", "results.json")}
    # fails while evaluating, after the model was loaded and patched
    assert main(args + [f"evaluation.perplexity.0.dataset={tmp_path / 'missing.txt'}"]) == 2
    assert {p: (out / p).read_bytes() for p in before} == before
    assert sorted(os.listdir(out)) == ["results.json", "results.txt"]  # no temporary files left


def test_overrides():
    cfg = {"a": {"b": [{"c": 1}, {"c": 2}]}, "x": None}
    out = apply_overrides(cfg, ["a.b.1.c=5", "x.y=[1, 2]", "n=null", "s=text"])
    assert out == {"a": {"b": [{"c": 1}, {"c": 5}]}, "x": {"y": [1, 2]}, "n": None, "s": "text"}
    assert cfg["a"]["b"][1]["c"] == 2  # the input is not modified
    with pytest.raises(RunError, match="not an index"):
        apply_overrides(cfg, ["a.b.7.c=1"])
    with pytest.raises(RunError, match="key.path=value"):
        apply_overrides(cfg, ["novalue"])


def test_adapt_opt_config_to_llama():
    from hf_models import tiny_model

    model = tiny_model("llama", layers=3)
    seed = {"w_num_format": "int", "w_mant_bits": 4, "block_size": 32, "sparsity_num_format": "bfp",
            "sparsify": True}
    comp = {"hbfp": {"fc1": [{"layer_ids": [6, 7, 8, 9, 10, 11], **seed}],
                     "fc2": [{"layer_ids": [0, 1, 2, 3], **seed}, {"layer_ids": [4, 5, 10, 11], **seed, "N": 1}]}}
    out, notes = adapt_compression(comp, model, source_layers=12)
    # i -> floor(i * 3 / 12): fc1 6..11 -> 1, 1, 2, 2, 2, 2; fc2 entry 0 -> {0}, entry 1: 4, 5 -> 1, 10, 11 -> 2
    assert out == {"hbfp": {"gate_proj": [{"layer_ids": [1, 2], **seed}], "up_proj": [{"layer_ids": [1, 2], **seed}],
                            "down_proj": [{"layer_ids": [0], **seed}, {"layer_ids": [1, 2], **seed, "N": 1}]}}
    assert any("fc1 -> gate_proj, up_proj" in n for n in notes)
    qsparse.integrations.resolve(model, out)  # fits the model
    # without source_layers, indices past the model are dropped
    out, _ = adapt_compression({"fc1": [{"layer_ids": [1, 5], **seed}]}, model)
    assert out == {"gate_proj": [{"layer_ids": [1], **seed}], "up_proj": [{"layer_ids": [1], **seed}]}


@needs_data
@pytest.mark.parametrize("arch", ["opt", "llama"])
def test_tiny_model_run_with_finetuning(tmp_path, arch, stories):
    from hf_models import tiny_model

    _, tok = stories
    model = tiny_model(arch, layers=3, vocab=512)
    mdir = tmp_path / "model"
    model.save_pretrained(mdir)
    tok.save_pretrained(mdir)
    mlp = {"opt": ["fc1", "fc2"], "llama": ["up_proj", "down_proj"]}[arch]
    cfg = {"name": "tiny", "model": str(mdir),
           "compression": {mlp[0]: [{"layer_ids": [0, 2], "weight": {"name": "int4_asym", "group_size": 16},
                                     "sparsity": "2:4"}],
                           mlp[1]: [{"layer_ids": "all", "weight": "mxfp4", "activation": "fp16"}]},
           "finetune": {"text": TEXT, "rows": [0.0, 0.01], "seqlen": 32,
                        "args": {"max_steps": 3, "per_device_train_batch_size": 2, "learning_rate": 1e-3,
                                 "warmup_ratio": 0.25}},  # the seed's key (transformers 5: a float warmup_steps)
           "evaluation": {"perplexity": {"dataset": TEXT, "rows": [0.9, 1.0], "seqlen": 32, "max_windows": 4,
                                         "batch_size": 2}},
           "save": True}
    out = tmp_path / "out"
    assert main(["--log-level", "ERROR", "run", write_config(tmp_path / "c.yaml", cfg), "--output-dir", str(out),
                 "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["finetune"]["steps"] == 3 and res["finetune"]["seqlen"] == 32
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    # the saved model reproduces the reported perplexity on the same windows (computed here)
    with open(TEXT, encoding="utf-8") as f:
        t = f.read()
    a = int(len(t) * 0.9)
    ids = tok(t[t.rfind("\n", 0, a) + 1:], return_tensors="pt").input_ids[0]
    assert res["evaluation"]["perplexity"][0]["ppl"] == pytest.approx(direct_ppl(saved, ids, 32, 4), rel=1e-5)
    for name, m in qsparse.integrations.patched_modules(saved):
        if m.mask is not None:  # 2:4 survived fine-tuning: exactly 2 nonzeros in every 4
            assert name.split(".")[-1] == mlp[0]
            nz = (m.weight != 0).view(m.weight.shape[0], -1, 4).sum(-1)
            assert bool((nz <= 2).all())


# ---- eval, describe, compress ------------------------------------------------------------------------------------


@needs_data
def test_eval_command_dense(tmp_path, stories, text_ids):
    out = tmp_path / "ev"
    assert main(["--log-level", "ERROR", "eval", "--model", STORIES, "--dataset", TEXT, "--seqlen", "64",
                 "--max-windows", "5", "--batch-size", "3", "--output-dir", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    model, _ = stories
    assert res["evaluation"]["perplexity"][0]["ppl"] == pytest.approx(direct_ppl(model, text_ids, 64, 5), rel=1e-6)
    assert res["compression"] is None


def test_describe(capsys):
    assert main(["describe", "nvfp4"]) == 0
    out = capsys.readouterr().out
    # hand-computed: NVFP4 4 bits + an 8-bit E4M3 scale per 16 -> 4.5; int4_asym g128: 4 + (16 + 4) / 128
    assert "nvfp4: 4-bit elements" in out and "4.5 bits per element + 32 bits per tensor" in out
    assert main(["describe", "int4_asym", "--group-size", "128", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["bits_per_element"] == 4 + 20 / 128
    assert main(["describe"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(qsparse.formats.names())


@needs_data
def test_compress_command(tmp_path):
    cfg = {"name": "c", "model": STORIES, "calibration": {"source": TEXT, "nsamples": 4, "seqlen": 64},
           "stages": [{"sparsegpt": {"sparsity": "2:4"}}, {"gptq": {"weight": {"name": "int4_asym",
                                                                              "group_size": 32}}}]}
    out = tmp_path / "cmp"
    assert main(["--log-level", "ERROR", "compress", write_config(tmp_path / "c.yaml", cfg), "--output-dir", str(out),
                 "--no-progress"]) == 0
    report = json.loads((out / "compress_report.json").read_text())
    assert report[0]["modules"]
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(out / "model")
    mods = qsparse.integrations.patched_modules(m)
    assert mods and all(mm.mask is not None for _, mm in mods)


@needs_data
def test_run_with_stages_and_finetune_marker(tmp_path):
    out = tmp_path / "st"
    assert main(["--log-level", "ERROR", "run", os.path.join(CONFIGS, "llama-7b-sparse-w4a16.yaml"), "--model",
                 STORIES, "--output-dir", str(out), "--no-progress", "dtype=float32",
                 f"calibration.source={TEXT}", "calibration.seqlen=64", "calibration.nsamples=4",
                 f"finetune.text={TEXT}", "finetune.rows=[0.0,0.01]", "finetune.seqlen=64", "finetune.args.max_steps=2",
                 "finetune.args.bf16=false", "finetune.args.gradient_accumulation_steps=1",
                 f"evaluation.perplexity=[{{dataset: {TEXT}, seqlen: 64, max_windows: 2}}]"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert len(res["stages"]) == 2 and res["finetune"]["steps"] == 2


# ---- errors ------------------------------------------------------------------------------------------------------


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "qsparse", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_errors_exit_2_without_traceback(tmp_path):
    r = _cli("describe", "int99")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "int99" in r.stderr and r.stderr.count("\n") == 1
    r = _cli("--debug", "describe", "int99")
    assert r.returncode != 0 and "Traceback" in r.stderr
    r = _cli("run", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = _cli("run", "--help")
    assert r.returncode == 0 and "--output-dir" in r.stdout and "key=value" in r.stdout


@pytest.mark.parametrize("cfg, message", [
    ({"model": "m", "modle": 1}, "unknown key(s) ['modle']"),
    ({"model": "m", "compression": {"fc1": [{"layer_ids": [0], "weight": "int99"}]}}, "int99"),
    ({"model": "m", "compression": {"fc1": [{"layer_ids": [0], "N": 3, "M": 2, "w_sparsity": True,
                                             "sparsity_mode": "structured", "sparsify": True}]}}, "N"),
    ({"model": "m", "evaluation": {"perplexity": {"dataset": "x", "seqlen": 1}}}, "seqlen=1"),
    ({"model": "m", "finetune": {"steps": 3}}, "finetune.args"),
    ({"model": "m", "stages": [{"prune": {}}]}, "stages[0]"),
])
def test_invalid_configs(tmp_path, capsys, cfg, message):
    assert main(["run", write_config(tmp_path / "bad.yaml", cfg)]) == 2
    err = capsys.readouterr().err
    assert message in err and "bad.yaml" in err


@needs_data
def test_layer_type_unknown_to_the_model(tmp_path, capsys):
    cfg = {"model": STORIES, "compression": {"fc1": [{"layer_ids": [0], "weight": "int4"}]}, "adapt": False}
    assert main(["--log-level", "ERROR", "run", write_config(tmp_path / "c.yaml", cfg), "--output-dir",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "fc1" in err and "gate_proj" in err  # the error lists the model's layer types
    assert not (tmp_path / "o").exists()


def test_readme_main_command_is_a_config_run():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme.split("## The two commands", 1)[1]
    first = section.split("```bash\n", 1)[1].split("```", 1)[0].strip()
    assert first == "qsparse run configs/stories260K-inference.yaml"
    assert os.path.exists(os.path.join(ROOT, "configs", "stories260K-inference.yaml"))
    second = section.split("```bash\n", 2)[2].split("```", 1)[0].strip()
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        assert second in f.read().splitlines()  # CI runs the README's test command


@needs_data
def test_lm_eval_results_are_reported_apart_from_token_perplexity(tmp_path, monkeypatch):
    import qsparse.eval.harness as harness

    seen = {}

    def fake(model, tok, **spec):
        seen.update(spec)
        return {"results": {"qsparse_text": {"word_perplexity": 321.5, "bits_per_byte": 2.25}}}

    monkeypatch.setattr(harness, "lm_eval_tasks", fake)
    out = tmp_path / "o"
    assert main(["--log-level", "ERROR", "run", os.path.join(CONFIGS, "stories260K-inference.yaml"), "--output-dir",
                 str(out), "--no-progress", "evaluation.baseline=false", "evaluation.perplexity.0.seqlen=64",
                 "evaluation.perplexity.0.max_windows=1", f"data_dir={DATA}",
                 f"evaluation.lm_eval={{text: {TEXT}, limit: 2}}"]) == 0
    assert seen["text"] == TEXT and seen["limit"] == 2
    lines = (out / "results.txt").read_text().splitlines()
    assert lines[0].startswith("Perplexity: ")
    assert "lm-eval qsparse_text word_perplexity: 321.500000" in lines
    assert "lm-eval qsparse_text bits_per_byte: 2.250000" in lines


@needs_data
def test_sensitivity_and_search_on_stories(tmp_path):
    cfg = os.path.join(CONFIGS, "opt-6.7b-layerwise-sensitivity.yaml")
    out = tmp_path / "sens"
    quick = [f"data_dir={DATA}", "dtype=float32", "evaluation.perplexity.0.seqlen=64",
             "evaluation.perplexity.0.max_windows=1"]
    assert main(["--log-level", "ERROR", "sensitivity", cfg, "--model", STORIES, "--layer-types", "fc1",
                 "--layer-ids", "4", "--output-dir", str(out), "--no-progress", *quick]) == 0
    state = json.loads((out / "sensitivity.json").read_text())
    cell = state["cells"]["fc1:4"]
    # fc1 of the OPT config is the gate and up projections of this Llama, 2:4 INT4 on layer 4 only
    assert set(cell["compression"]) == {"gate_proj", "up_proj"}
    assert cell["compression"]["gate_proj"][0]["layer_ids"] == [4] and cell["compression"]["gate_proj"][0]["N"] == 2
    assert (out / "sensitivity.png").exists() and (out / "sensitivity.csv").read_text().startswith("layer_type,")
    out = tmp_path / "search"
    assert main(["--log-level", "ERROR", "search", os.path.join(CONFIGS, "stories260K-search.yaml"), "--output-dir",
                 str(out), "--no-progress", "--n-trials", "2", f"data_dir={DATA}", "search.sampler=random",
                 "evaluation.perplexity.0.seqlen=64", "evaluation.perplexity.0.max_windows=1"]) == 0
    assert len(json.loads((out / "trials.json").read_text())) == 2
    best = yaml.safe_load((out / "best_run.yaml").read_text())
    assert best["compression"] == yaml.safe_load((out / "best_layers.yaml").read_text())
    qsparse.load_config(best["compression"] or {})
