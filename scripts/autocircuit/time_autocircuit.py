#!/usr/bin/env python3
"""Times AutoCircuit (PyPI `auto-circuit`) on the model folder and prompt file attrib uses.

What is timed is what `../shared/oracle/make_golden.py --timing` times, with the same
settings: `patchable_model(factorized=True, slice_output="last_seq", separate_qkv=True
[, seq_len=<prompt length>])` (mode tokenwise adds seq_len), then the whole
`mask_gradient_prune_scores(grad_function="logit", answer_function="avg_diff",
mask_val=0.0)` over the train split of `load_datasets_from_json` (128 train / 128 test
prompts, batch 16, prepend_bos=True, its default shuffle with seed 42). The two are timed
separately: "algorithm" is the counterpart of attrib's "attribution" seconds, both
without model loading.

Differences from make_golden.py --timing, none of which touch the timed calls:
- the model is read from an HF GPT-2 folder (config.json, model.safetensors, tokenizer.json,
  e.g. the one `attrib-worker init-model` writes) instead of being generated in memory;
- each repeat loads the model afresh (patchable_model changes it in place) instead of
  deep-copying a base model, so the process holds one model, as an AutoCircuit user's would;
- peak RSS is the process' high-water mark (Linux VmHWM) from the start of loading that
  repeat's model to the end of the algorithm: the high-water mark is reset through
  /proc/self/clear_refs before each repeat. attrib's figure is its process' VmHWM too.

Loading is offline (HF_HUB_OFFLINE etc.): the TransformerLens conversion asks
transformers.AutoConfig for GPT-2's config, which is answered with the folder's config,
as make_golden.py's load_tl_model_offline does. Torch threads are torch's default (one per
core), as in make_golden.py. One line per run on stdout:

    autocircuit <mode> run <i>: algorithm <s> s  patchable_model <s> s  peak RSS <MiB> MiB  ...
"""
import argparse
import contextlib
import gc
import os
import sys
import time
from pathlib import Path
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch as t  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# ATTRIB_AUTOCIRCUIT_OFFLINE_STUBS=1 (the GPU bundle's run.sh): inert stand-ins for packages
# imported but never called on the timed path, where the node lacks them (offline_stubs.py).
STUBBED = []
if os.environ.get("ATTRIB_AUTOCIRCUIT_OFFLINE_STUBS") == "1":
    import offline_stubs  # noqa: E402  (this script's folder is on sys.path)

    STUBBED = offline_stubs.install()


def status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Sets VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def load_tl_model(model_dir: Path, device: t.device):
    """auto_circuit.experiment_utils.load_tl_model("gpt2", device) on a local folder."""
    import transformer_lens as tl
    import transformer_lens.loading_from_pretrained as loading
    from transformers import AutoTokenizer, GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    # TransformerLens prints "Loaded pretrained model ..." on stdout: keep stdout to our lines.
    with mock.patch.object(loading.AutoConfig, "from_pretrained",
                           side_effect=lambda *a, **k: hf.config), \
            contextlib.redirect_stdout(sys.stderr):
        model = tl.HookedTransformer.from_pretrained(
            "gpt2", hf_model=hf, tokenizer=tokenizer, device=device,
            fold_ln=True, center_writing_weights=True, center_unembed=True,
        )
    # as load_tl_model does after loading
    model.cfg.use_attn_result = True
    model.cfg.use_attn_in = True
    model.cfg.use_split_qkv_input = True
    model.cfg.use_hook_mlp_in = True
    model.eval()
    for p in model.parameters():
        p.requires_grad = False
    return model


def sync(device: t.device):
    if device.type == "cuda":
        t.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "target/attrib-demo/gpt2-small-random")
    ap.add_argument("--dataset", type=Path,
                    default=ROOT / "datasets/ioi/ioi_vanilla_template_prompts.json")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default="quickstart,tokenwise")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=128)
    ap.add_argument("--n-test", type=int, default=128)
    args = ap.parse_args()

    import importlib.metadata as md

    from auto_circuit.data import load_datasets_from_json
    from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores
    from auto_circuit.utils.graph_utils import patchable_model

    device = t.device(args.device)
    t.set_grad_enabled(True)
    can_reset = reset_peak_rss()
    print(f"autocircuit: auto-circuit {md.version('auto-circuit')}, torch {t.__version__}, "
          f"device {device}, {t.get_num_threads()} torch threads (torch default), "
          f"model {args.model}, dataset {args.dataset}, {args.n_train} train prompts, "
          f"batch {args.batch_size}; peak RSS = process VmHWM "
          + ("per run (reset before loading)" if can_reset else "since process start")
          + (f"; inert stand-ins for {', '.join(STUBBED)} (never called)" if STUBBED else ""),
          flush=True)

    loaders = {}
    for mode in args.modes.split(","):
        if mode not in ("quickstart", "tokenwise"):
            raise SystemExit(f"unknown mode {mode!r}")
        tokenwise = mode == "tokenwise"
        for i in range(1, args.repeats + 1):
            gc.collect()
            if device.type == "cuda":
                t.cuda.empty_cache()
                t.cuda.reset_peak_memory_stats(device)
            reset_peak_rss()
            rss_before = status_mib("VmRSS:")
            t0 = time.perf_counter()
            model = load_tl_model(args.model, device)
            t_load = time.perf_counter() - t0
            if tokenwise not in loaders:  # the loaders need only the tokenizer
                loaders[tokenwise] = load_datasets_from_json(
                    model=model, path=args.dataset, device=device, prepend_bos=True,
                    batch_size=args.batch_size, train_test_size=(args.n_train, args.n_test),
                    return_seq_length=tokenwise,
                )
            train_loader, test_loader = loaders[tokenwise]

            t0 = time.perf_counter()
            pmodel = patchable_model(model, factorized=True, slice_output="last_seq",
                                     seq_len=test_loader.seq_len if tokenwise else None,
                                     separate_qkv=True, device=device)
            sync(device)
            t_pm = time.perf_counter() - t0

            t0 = time.perf_counter()
            mask_gradient_prune_scores(model=pmodel, dataloader=train_loader,
                                       official_edges=None, grad_function="logit",
                                       answer_function="avg_diff", mask_val=0.0)
            sync(device)
            t_algo = time.perf_counter() - t0

            peak = status_mib("VmHWM:")
            extra = ""
            if device.type == "cuda":
                extra = f"  peak CUDA {t.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
            print(f"autocircuit {mode} run {i}: algorithm {t_algo:.2f} s  "
                  f"patchable_model {t_pm:.3f} s  peak RSS {peak:.0f} MiB{extra}  "
                  f"(RSS before {rss_before:.0f} MiB, load {t_load:.1f} s, "
                  f"edges {pmodel.n_edges}, load avg {os.getloadavg()[0]:.2f})",
                  flush=True)
            del pmodel, model


if __name__ == "__main__":
    main()
