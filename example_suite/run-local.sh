#!/usr/bin/env bash
# The case study against the live local models, served by llama.cpp on 127.0.0.1, re-recording
# their answers and the judge's grades in example_suite/llmeval-cache/ (review them with git
# diff). Installs what it needs (first run: builds llama.cpp, about 5 minutes, and fetches
# 1.6 GB of models), starts one server per model, runs the suites, stops the servers.
# About 70 minutes on 2 cores. The fine-tune must have been made first:
# python example_suite/finetune.py (FINETUNE.md). Extra arguments go to every pytest run.
#
# Each model answers alone, one case at a time, so its latencies are its own: first every
# model's answers (the structural suite), then the judge's grades (the judged suite scores
# the same recorded answers), then a replay of the whole study for its table.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
models=(qwen-1.5b qwen-0.5b qwen-0.5b-ft smollm2)

python3 -m pip install -q -e .
python3 example_suite/local_model.py install qwen-1.5b qwen-0.5b smollm2

logs=$(mktemp -d)
servers=()
stop_servers() {
    local status=$?  # pytest's: the gate's decision is this script's exit status
    kill "${servers[@]}" 2>/dev/null || true
    wait "${servers[@]}" 2>/dev/null || true  # their SIGTERM status must not replace pytest's
    rm -rf "$logs"
    exit "$status"
}
trap stop_servers EXIT
for model in "${models[@]}"; do
    python3 example_suite/local_model.py serve "$model" >"$logs/$model.log" 2>&1 &
    servers+=($!)
done
for model in "${models[@]}"; do
    if ! python3 example_suite/local_model.py wait "$model" --timeout 300; then
        cat "$logs/$model.log" >&2
        exit 1
    fi
done

# One model alone: the settings' reference and swap margin are for the whole study. Its
# gate may fail (status 1), and the answers are kept; a usage or internal error stops here.
alone() {
    python3 -m pytest "$@" --llm-reference-model= --llm-swap-margin= \
        -p no:cacheprovider || [ $? -eq 1 ]
}
for model in "${models[@]}"; do
    alone example_suite/product_reviews.llmeval.yaml --llm-models="$model" --llm-record=all "$@"
done
for model in qwen-1.5b qwen-0.5b qwen-0.5b-ft; do
    alone example_suite/product_reviews_judged.llmeval.yaml --llm-models="$model" \
        --llm-record=new "$@"
done
for labels in judge_labels judge_labels_likes; do
    llmeval agreement "example_suite/$labels.yaml" --record all \
        --suite example_suite/product_reviews_judged.llmeval.yaml \
        --config example_suite/pyproject.toml
done
python3 -m pytest example_suite "$@"
