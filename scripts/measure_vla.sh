#!/usr/bin/env bash
# The tiny VLA on the base / SFT / SFT+GRPO backbones, end to end on CPU (docs/results.md).
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
#
# The comparison on joint-position demos (the base head is measure_record.sh's direct head, linked in):
#   CONFIG=training/configs/vla_tiny_joint.yaml STEPS=1500 DATA=runs/measure_record_n20/direct \
#   HELDOUT=runs/measure_record_n20/heldout EPISODES=0 ALIGN=runs/bench_align_A RUNS=runs/measure_vla_joint \
#   PROBE_ARGS="--task all --feature-dim 8 --projections 10" scripts/run scripts/measure_vla.sh
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
CONFIG=${CONFIG:-training/configs/vla_tiny.yaml}
STEPS=${STEPS:-}            # empty: the config's
HELDOUT=${HELDOUT:-}        # empty: offline MSE on the val split of $DATA; else every episode of this folder
PROBE_ARGS=${PROBE_ARGS:---task $PROBE_TASK}
NICE=${NICE-nice -n 19}

backbone_of() { case "$1" in base) echo tiny ;; sft) echo "$ALIGN/sft" ;; grpo) echo "$ALIGN/grpo" ;; esac; }

for b in $BACKBONES; do
  bb=$(backbone_of "$b")
  if [[ $bb != tiny && ! -f $bb/config.json ]]; then
    echo "measure_vla: backbone $bb missing: run roboalign bench align --data $DATA --out $ALIGN first" >&2
    exit 2
  fi
  if [[ ! -f $RUNS/vla_$b/checkpoint/config.json ]]; then
    $NICE roboalign train vla --config "$CONFIG" \
      --set "backbone=$bb" "output_dir=$RUNS/vla_$b" "dataset=$DATA" ${STEPS:+"steps=$STEPS"}
  fi
  if [[ $EPISODES -gt 0 && ! -f $RUNS/vla_eval_$b/success.csv ]]; then
    $NICE roboalign eval libero --checkpoint "$RUNS/vla_$b/checkpoint" --first-init-state "$FIRST" \
      --episodes "$EPISODES" --workers "$WORKERS" --out "$RUNS/vla_eval_$b"
  fi
  if [[ ! -f $RUNS/vla_offline_$b/offline.json ]]; then
    if [[ -n $HELDOUT ]]; then offline=(--dataset "$HELDOUT" --split all); else offline=(--dataset "$DATA"); fi
    $NICE roboalign eval offline --checkpoint "$RUNS/vla_$b/checkpoint" "${offline[@]}" --out "$RUNS/vla_offline_$b"
  fi
done

probe_args=()
for b in $BACKBONES; do probe_args+=(--backbone "$b=$(backbone_of "$b")"); done
if [[ ! -f $RUNS/vla_probe/probe.json ]]; then
  # shellcheck disable=SC2086  # PROBE_ARGS is a list of options
  $NICE roboalign eval probe --dataset "$DATA" $PROBE_ARGS "${probe_args[@]}" --out "$RUNS/vla_probe"
fi

[[ $EPISODES -gt 0 ]] || exit 0
run_args=()
for b in $BACKBONES; do run_args+=(--run "$b=$RUNS/vla_eval_$b"); done
roboalign eval compare "${run_args[@]}" --title "tiny VLA, LIBERO init states $FIRST..$((FIRST + EPISODES - 1))" \
  --out "$FIGURES/vla_compare"
