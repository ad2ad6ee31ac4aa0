#!/usr/bin/env bash
# The tiny VLA head on CPU, trained on demos of the four tasks' real-target scenes (docs/results.md).
#
#   nice -n 19 scripts/run scripts/measure_scenes.sh      # DEMOS=10 EPISODES=20 ... to change the sizes
#
# 1. scripted-expert demos of the new scenes (`roboalign collect --scenes targets`, init states 0..DEMOS-1,
#    128² cameras like the project-cache default dataset of the libero_object stand-ins); with WORKERS > 1 the
#    tasks are split over that many collect processes writing the same folder, then one last pass writes
#    meta.json and norm_stats/ over every episode;
# 2. the flow-matching head on the frozen tiny backbone (training/configs/vla_tiny.yaml, its 1,500 steps, as
#    scripts/measure_vla.sh uses for the stand-ins, so the figures compare);
# 3. closed loop in LIBERO on init states FIRST..FIRST+EPISODES-1 of every task (never seen in the demos);
# 4. offline action MSE on the held-out episodes;
# 5. `roboalign eval compare` -> $FIGURES/scenes_head/ (success per task, Wilson 95 % intervals) and the
#    rollout strip -> $FIGURES/scenes_head_rollouts.png.
# Each stage is skipped when its output exists (delete it to redo it), so a stopped run resumes.
set -euo pipefail
RUNS=${RUNS:-runs/scenes}
DATA=${DATA:-$RUNS/demos}    # not the project cache: that holds the libero_object stand-ins' default dataset
DEMOS=${DEMOS:-20}
FIRST=${FIRST:-20}
EPISODES=${EPISODES:-10}
WORKERS=${WORKERS:-2}
FIGURES=${FIGURES:-docs/figures}
TASKS=(bottle_to_basket box_to_plate can_to_bowl shelf_to_tray)

collect() { roboalign collect --scenes targets --episodes "$DEMOS" --camera-size 128 --out "$DATA" "$@"; }

if [[ ! -d $DATA/norm_stats ]]; then
  if (( WORKERS > 1 )); then
    pids=()
    for ((w = 0; w < WORKERS; w++)); do
      part=()
      for i in "${!TASKS[@]}"; do if (( i * WORKERS / ${#TASKS[@]} == w )); then part+=("${TASKS[i]}"); fi; done
      (IFS=,; collect --no-stats --tasks "${part[*]}" > "$RUNS/collect_$w.log" 2>&1) &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
  fi
  collect    # everything is on disk now: writes meta.json (all tasks) and norm_stats/
fi

if [[ ! -f $RUNS/vla/checkpoint/config.json ]]; then
  roboalign train vla --config training/configs/vla_tiny.yaml --set "output_dir=$RUNS/vla" "dataset=$DATA"
fi

if [[ ! -f $RUNS/eval/success.csv ]]; then
  roboalign eval libero --checkpoint "$RUNS/vla/checkpoint" --first-init-state "$FIRST" \
    --episodes "$EPISODES" --workers "$WORKERS" --out "$RUNS/eval"
fi

if [[ ! -f $RUNS/offline/offline.json ]]; then
  roboalign eval offline --checkpoint "$RUNS/vla/checkpoint" --dataset "$DATA" --out "$RUNS/offline"
fi

roboalign eval compare --run "scenes=$RUNS/eval" \
  --title "tiny VLA on the four tasks' scenes, init states $FIRST..$((FIRST + EPISODES - 1))" \
  --out "$FIGURES/scenes_head"
if [[ -f $RUNS/eval/rollouts.png ]]; then cp "$RUNS/eval/rollouts.png" "$FIGURES/scenes_head_rollouts.png"; fi
