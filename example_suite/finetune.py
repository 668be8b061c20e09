"""Fine-tune Qwen2.5-Coder 0.5B Instruct on the case study's 20 training examples, on the CPU.

The fine-tune role of the case study (README, "The case study"): the cheap base model taught
the task by the examples in product_reviews_train.jsonl, then served like the other models.

    python example_suite/finetune.py [--out DIR]

Needs, in one environment: llama-cpp-python (local_model.py installs it), torch
(`pip install torch==2.13.0`; the CPU build is enough), transformers and peft. Takes about
ten minutes on 2 cores. Writes to DIR (default: local_model.py's model folder):

- ``qwen-0.5b-ft.gguf``: the merged model, quantized as its base is (Q4_K_M), served by
  ``local_model.py serve qwen-0.5b-ft``;
- ``qwen-0.5b-ft.json``: the recipe, the seed, the loss at every step and the output's
  sha256 (FINETUNE.md records the run whose answers are committed).

The recipe: LoRA (rank 8, alpha 16, dropout 0.05) on every linear layer of the base GGUF,
dequantized by transformers; loss on the assistant's turn only; AdamW, learning rate 2e-4,
batch 4, 3 epochs, examples shuffled by the seed; then the adapter merged into the weights,
written as GGUF F16 by llama.cpp's own converter (vendored in llama-cpp-python's source
distribution, fetched with pip) and quantized by llama.cpp to Q4_K_M.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import local_model

HERE = Path(__file__).resolve().parent
TRAIN = HERE / "product_reviews_train.jsonl"
BASE = "qwen-0.5b"
NAME = "qwen-0.5b-ft"
RECIPE: dict[str, Any] = {
    "base": BASE,
    "method": "LoRA, merged",
    "rank": 8,
    "alpha": 16,
    "dropout": 0.05,
    "target_modules": "all-linear",
    "learning_rate": 2e-4,
    "batch_size": 4,
    "epochs": 3,
    "seed": 20231108,
    "loss_on": "assistant turn",
    "quantization": "Q4_K_M",
}


def examples(tokenizer: Any) -> list[tuple[list[int], list[int]]]:
    """(token ids, labels) per training line; labels are -100 but on the assistant's turn."""
    rows = []
    for line in TRAIN.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        prompt = tokenizer.apply_chat_template(
            messages[:-1], tokenize=True, add_generation_prompt=True
        )
        whole = tokenizer.apply_chat_template(messages, tokenize=True)
        prompt, whole = _ids(prompt), _ids(whole)
        if whole[: len(prompt)] != prompt:
            raise ValueError("the chat template renders the prompt differently inside the chat")
        rows.append((whole, [-100] * len(prompt) + whole[len(prompt) :]))
    return rows


def _ids(encoded: Any) -> list[int]:
    # transformers 5 returns a BatchEncoding from apply_chat_template, 4 a list.
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    return [int(i) for i in ids]


def train(base_gguf: Path, work: Path) -> list[float]:
    """LoRA-train, merge, and save the model in Hugging Face form in work/hf; the losses."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(RECIPE["seed"])
    folder, name = str(base_gguf.parent), base_gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(
            r=RECIPE["rank"],
            lora_alpha=RECIPE["alpha"],
            lora_dropout=RECIPE["dropout"],
            target_modules=RECIPE["target_modules"],
            task_type="CAUSAL_LM",
        ),
    )
    rows = examples(tokenizer)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=RECIPE["learning_rate"]
    )
    order = random.Random(RECIPE["seed"])
    losses: list[float] = []
    model.train()
    for epoch in range(RECIPE["epochs"]):
        batch_order = list(range(len(rows)))
        order.shuffle(batch_order)
        for start in range(0, len(rows), RECIPE["batch_size"]):
            batch = [rows[i] for i in batch_order[start : start + RECIPE["batch_size"]]]
            began = time.monotonic()
            # One example at a time, gradients summed over the batch: a batch of four at once
            # holds four copies of the 151,936-wide logits, many gigabytes in float32.
            total = 0.0
            for ids, labels in batch:
                loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
                (loss / len(batch)).backward()
                total += float(loss.detach()) / len(batch)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(round(total, 4))
            print(
                f"epoch {epoch + 1} step {len(losses)}: loss {losses[-1]:.4f} "
                f"({time.monotonic() - began:.1f} s)",
                file=sys.stderr,
            )
    merged = model.merge_and_unload()
    # The weights are float32 tensors now; the flag left by loading a GGUF only refuses to
    # save them.
    merged.hf_quantizer = None
    if hasattr(merged.config, "quantization_config"):
        del merged.config.quantization_config
    merged.save_pretrained(work / "hf")
    tokenizer.save_pretrained(work / "hf")
    return losses


def converter(work: Path) -> Path:
    """llama.cpp's convert_hf_to_gguf.py from the source distribution of the pinned
    llama-cpp-python (the converter and its gguf package must match that llama.cpp)."""
    requirement = local_model.LLAMA_CPP_REQUIREMENT.replace("[server]", "")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
         requirement, "-d", str(work)],
        check=True,
    )  # fmt: skip
    (sdist,) = work.glob("llama_cpp_python-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(work, filter="data")
    (script,) = work.glob("llama_cpp_python-*/vendor/llama.cpp/convert_hf_to_gguf.py")
    return script


def quantize(source: Path, target: Path) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if status != 0:
        raise RuntimeError(f"llama.cpp could not quantize {source} (status {status})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=local_model.model_folder())
    args = parser.parse_args(argv)
    base = local_model.model_file(BASE)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        losses = train(base, work)
        f16 = work / f"{NAME}.f16.gguf"
        subprocess.run(
            [sys.executable, str(converter(work)), str(work / "hf"), "--outtype", "f16",
             "--outfile", str(f16)],
            check=True,
        )  # fmt: skip
        target = args.out / f"{NAME}.gguf"
        quantize(f16, target)
    record = {
        "recipe": RECIPE,
        "training_file": TRAIN.name,
        "training_sha256": local_model.sha256(TRAIN),
        "base_sha256": local_model.sha256(base),
        "losses": losses,
        "minutes": round((time.monotonic() - began) / 60, 1),
        "output": target.name,
        "output_sha256": local_model.sha256(target),
        "output_bytes": target.stat().st_size,
    }
    (args.out / f"{NAME}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
