#!/usr/bin/env bash
# Issue 13's device run: MiniLM movement at longer budgets, and a BERT pretrained here (same shape) at short ones.
# S divides every step count (local smoke test: S=100).
set -u
S=${S:-1}
D=${D:-study}; L=${L:-/tmp/runs}; mkdir -p "$L"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
ft() { local name=$1 steps=$2; shift 2; local n=$((steps / S)); local ev=$((n / 10)); [ $ev -lt 1 ] && ev=1
  python3 benchmarks/movement_study.py finetune --data $D --steps $n --eval-every $ev --log "$L/$name.jsonl" "$@" > "$L/$name.out" 2>&1 & }
ft M-movement-9600 9600 --model $D/model --method movement
ft M-movement-4800 4800 --model $D/model --method movement
ft M-movement-1200 1200 --model $D/model --method movement
ft M-magnitude-4800 4800 --model $D/model --method magnitude
ft M-movement-1200-frozen 1200 --model $D/model --method movement --freeze-embeddings
ft M-movement-1200-sgd 1200 --model $D/model --method movement --score-optimizer sgd
ft M-movement-1200-lr3e-5 1200 --model $D/model --method movement --lr 3e-5
ft M-movement-1200-s50 1200 --model $D/model --method movement --sparsity 0.5
python3 benchmarks/movement_study.py pretrain --data $D --out /tmp/mlm --steps $((3000 / S)) --log-every $(( 100 / S > 0 ? 100 / S : 1 )) --log "$L/pretrain.jsonl" > "$L/pretrain.out" 2>&1
ft P-dense-1200 1200 --model /tmp/mlm --method dense
ft P-magnitude-1200 1200 --model /tmp/mlm --method magnitude
ft P-movement-1200 1200 --model /tmp/mlm --method movement
ft P-movement-4800 4800 --model /tmp/mlm --method movement
ft P-dense-4800 4800 --model /tmp/mlm --method dense
wait
ft M-movement-1200-noclip 1200 --model $D/model --method movement --max-grad-norm 0
ft M-dense-1200 1200 --model $D/model --method dense
ft M-movement-1200-warmup30 1200 --model $D/model --method movement --warmup-frac 0.3
for seed in 1 2; do ft M-movement-1200-s$seed 1200 --model $D/model --method movement --seed $seed; done
ft M-movement-1200-cool50 1200 --model $D/model --method movement --cooldown-frac 0.5
wait
