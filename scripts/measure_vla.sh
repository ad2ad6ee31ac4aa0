#!/usr/bin/env bash
# Issue 6's measurement, end to end on CPU: the tiny VLA on the base / SFT / SFT+GRPO backbones.
#
#   scripts/run scripts/measure_vla.sh            # after `roboalign collect` and `roboalign bench align`
#
# 1. trains the flow-matching head on the frozen backbone (training/configs/vla_tiny.yaml) for each of
#    base (the tiny random-initialised model), SFT and SFT+GRPO (the checkpoints `roboalign bench align`
#    wrote to $ALIGN/sft and $ALIGN/grpo), on the same demonstrations;
# 2. closed loop in LIBERO on init states $FIRST..$FIRST+$EPISODES-1 of every task (the demos use 0..19,
#    so these scenes were never seen), $WORKERS processes;
# 3. offline action MSE on the held-out episodes, and the KNN phase probe (Table 8) on $PROBE_TASK;
# 4. `roboalign eval compare` of the three runs -> $FIGURES/vla_compare.{md,png}.
# Each stage is skipped when its output exists (delete the folder to redo it), so a stopped run resumes.
set -euo pipefail
DATA=${DATA:-default}  # default: the demos in the project cache (~/.cache/roboalign/data), collected on first use
RUNS=${RUNS:-/work/runs}
ALIGN=${ALIGN:-runs/bench_align}
FIRST=${FIRST:-20}
EPISODES=${EPISODES:-20}
WORKERS=${WORKERS:-2}
PROBE_TASK=${PROBE_TASK:-bottle_to_basket}
FIGURES=${FIGURES:-docs/figures}
BACKBONES=${BACKBONES:-base sft grpo}

backbone_of() { case "$1" in base) echo tiny ;; sft) echo "$ALIGN/sft" ;; grpo) echo "$ALIGN/grpo" ;; esac; }

for b in $BACKBONES; do
  bb=$(backbone_of "$b")
  if [[ $bb != tiny && ! -f $bb/config.json ]]; then
    echo "measure_vla: backbone $bb missing: run roboalign bench align --data $DATA --out $ALIGN first" >&2
    exit 2
  fi
  if [[ ! -f $RUNS/vla_$b/checkpoint/config.json ]]; then
    roboalign train vla --config training/configs/vla_tiny.yaml \
      --set "backbone=$bb" "output_dir=$RUNS/vla_$b" "dataset=$DATA"
  fi
  if [[ ! -f $RUNS/vla_eval_$b/success.csv ]]; then
    roboalign eval libero --checkpoint "$RUNS/vla_$b/checkpoint" --first-init-state "$FIRST" \
      --episodes "$EPISODES" --workers "$WORKERS" --out "$RUNS/vla_eval_$b"
  fi
  if [[ ! -f $RUNS/vla_offline_$b/offline.json ]]; then
    roboalign eval offline --checkpoint "$RUNS/vla_$b/checkpoint" --dataset "$DATA" --out "$RUNS/vla_offline_$b"
  fi
done

probe_args=()
for b in $BACKBONES; do probe_args+=(--backbone "$b=$(backbone_of "$b")"); done
if [[ ! -f $RUNS/vla_probe/probe.json ]]; then
  roboalign eval probe --dataset "$DATA" --task "$PROBE_TASK" "${probe_args[@]}" --out "$RUNS/vla_probe"
fi

run_args=()
for b in $BACKBONES; do run_args+=(--run "$b=$RUNS/vla_eval_$b"); done
roboalign eval compare "${run_args[@]}" --title "tiny VLA, LIBERO init states $FIRST..$((FIRST + EPISODES - 1))" \
  --out "$FIGURES/vla_compare"
