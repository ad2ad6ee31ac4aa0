#!/usr/bin/env bash
# Does recording through ROS lose anything? A head trained on N demonstrations per task
# recorded through the bridge (the scripted expert as the teleoperator on the leader input, `roboalign record`)
# vs the same head trained on N demonstrations collected directly in LIBERO (`roboalign collect`), same init
# states 0.., same training config; offline MSE on the same held-out episodes (init states 40..) and closed-loop
# success on init states 20.. (never in either training set).
#
#   scripts/run scripts/measure_record.sh          # N=5, ~1 h on 2 cores; each stage resumes / is skipped when done
#   N=20 STEPS=1500 EVAL_EPISODES=20 RUNS=runs/measure_record_n20 scripts/run scripts/measure_record.sh
#
# The two sources' stages run side by side (two cores): the direct collection beside the ROS recording, then
# both heads' training, then both evaluations. Recording through ROS runs at normal priority (its watchdogs
# fault when starved); collecting, training and evaluation run under `nice -n 19` (NICE= to change) so they
# yield to the ROS stage and to other work.
set -euo pipefail
N=${N:-5}
RUNS=${RUNS:-runs/measure_record}
STEPS=${STEPS:-600}
EVAL_EPISODES=${EVAL_EPISODES:-2}
HELDOUT=${HELDOUT:-2}
CONFIG=training/configs/vla_tiny_joint.yaml
NICE=${NICE-nice -n 19}
mkdir -p "$RUNS"
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((150 + $$ % 80))}  # the sim stack on its own DDS domain: other stacks stay out

collect_direct() {
  $NICE roboalign collect --episodes "$N" --out "$RUNS/direct" --action-space joint_position
  $NICE roboalign collect --episodes "$HELDOUT" --init-offset 40 --out "$RUNS/heldout" --action-space joint_position
}

data_of() { if [[ $1 == ros ]]; then echo "$RUNS/ros/dataset"; else echo "$RUNS/$1"; fi; }

train() {  # one head per source; skipped when its checkpoint exists
  [[ -f $RUNS/head_$1/checkpoint/config.json ]] && return 0
  $NICE roboalign train vla --config "$CONFIG" --set "dataset=$(data_of "$1")" --set "steps=$STEPS" \
    --set "output_dir=$RUNS/head_$1"
}

evaluate() {
  if [[ ! -f $RUNS/offline_$1/offline.json ]]; then
    $NICE roboalign eval offline --checkpoint "$RUNS/head_$1/checkpoint" --dataset "$RUNS/heldout" --split all \
      --out "$RUNS/offline_$1"
  fi
  if [[ ! -f $RUNS/libero_$1/success.csv ]]; then
    $NICE roboalign eval libero --checkpoint "$RUNS/head_$1/checkpoint" --first-init-state 20 \
      --episodes "$EVAL_EPISODES" --workers 1 --out "$RUNS/libero_$1"
  fi
}

both() {  # "$1" for the ros and the direct source at once; fails when either does
  "$1" ros & local a=$!
  "$1" direct & local b=$!
  local rc=0
  wait "$a" || rc=$?
  wait "$b" || rc=$?
  return "$rc"
}

collect_direct & collecting=$!
roboalign record --task all --episodes "$N" --out "$RUNS/ros" --launch sim --operator expert --mode leader
wait "$collecting"
both train
both evaluate
for src in ros direct; do
  echo "== $src"; cat "$RUNS/offline_$src/offline.json"; echo; cat "$RUNS/libero_$src/success.csv"
done
