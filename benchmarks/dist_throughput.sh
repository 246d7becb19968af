#!/usr/bin/env bash
# Data-parallel throughput on one machine, in one run: 2 ranks × 1 thread (`bilevel train --nproc 2`, on one host
# the gradients go through shared memory, everything else through Gloo on loopback) against 1 rank × 1 thread,
# for backprop and ep, in two settings:
#   same global batch   each rank takes half of every batch of the config (the N-rank run computes the same
#                       batches as the 1-rank run: strong scaling);
#   same per-rank batch each rank takes a whole batch of the config, so the global batch doubles (weak scaling,
#                       what PyTorch's DDP measures when it keeps the per-process batch);
# and, as the machine's ceiling for both, two independent 1-rank runs at once (no communication at all; their
# examples per second added): what two processes get from two cores on this machine.
#
#   benchmarks/dist_throughput.sh [BUILD_DIR]   (environment: REPS=5 EPOCHS=3 TRAIN_LIMIT=20000 OUT=bench_dist,
#                                                RULES="backprop ep", EXTRA="key=value ..." for every run)
#
# Each run trains EPOCHS epochs on the first TRAIN_LIMIT Fashion-MNIST training examples (1000 held out for
# validation, 2000 test examples) with the rule's configs/fmnist_mlp_*.yaml and train.threads=1. The figure is
# training examples per second of epoch time (metrics.csv's epoch_seconds: training plus the evaluation, which the
# ranks split too), the median over the epochs after the first and over REPS repetitions; the settings alternate
# so that drift on a shared machine spreads over all of them. Writes OUT/results.csv and prints the speed-ups, both
# as the ratio of those medians and as the median of the ratios paired within each repetition.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-${BUILD_DIR:-build}}
BIN="$BUILD_DIR/bilevel"
REPS=${REPS:-5}
EPOCHS=${EPOCHS:-3}
TRAIN_LIMIT=${TRAIN_LIMIT:-20000}
OUT=${OUT:-bench_dist}
RULES=${RULES:-"backprop ep"}
read -r -a extra <<< "${EXTRA:-}"
[ -x "$BIN" ] || { echo "dist_throughput.sh: $BIN not built (cmake --build $BUILD_DIR --target bilevel_cli)" >&2; exit 2; }
mkdir -p "$OUT"
unset OMP_NUM_THREADS RANK WORLD_SIZE MASTER_ADDR MASTER_PORT
source benchmarks/rule_configs.sh
batch_of() { awk '/^train:/{t=1;next} /^[^ ]/{t=0} t && $1=="batch_size:"{print $2; exit}' "$1"; }
echo "rule,setting,rep,epoch,epoch_seconds,examples_per_second" > "$OUT/results.csv"
"$BIN" env | grep -E '^(cpus_available|cpu_model|blas):' || true
train_examples=$((TRAIN_LIMIT - 1000))
for rep in $(seq 1 "$REPS"); do
  for rule in $RULES; do
    config=$(config_of "$rule") || { echo "dist_throughput.sh: unknown rule $rule" >&2; exit 2; }
    batch=$(batch_of "$config")
    for setting in one same_global same_per_rank independent_pair; do
      case $setting in
        one|independent_pair) args=() ;;
        same_global) args=(--nproc 2) ;;
        same_per_rank) args=(--nproc 2 train.batch_size=$((2 * batch))) ;;
      esac
      train() {
        "$BIN" train "$config" train.threads=1 train.epochs="$EPOCHS" data.train_limit="$TRAIN_LIMIT" \
          data.validation=1000 data.test_limit=2000 scheduler.name=none checkpoint.every=1000 \
          output.root="$OUT/runs" experiment.name="${rule}_${setting}$1" "${extra[@]}" "${args[@]}" 2>/dev/null | head -1
      }
      if [ "$setting" = independent_pair ]; then
        train _a > "$OUT/.run_a" & train _b > "$OUT/.run_b" & wait
        runs=("$(cat "$OUT/.run_a")" "$(cat "$OUT/.run_b")")
      else
        runs=("$(train "")")
      fi
      # Per epoch: examples per second, added over the runs (one, or the independent pair).
      for run in "${runs[@]}"; do
        awk -F, 'NR==1 {for (i=1;i<=NF;i++) if ($i=="epoch_seconds") c=i; next} {print $1 "," $c}' "$run/metrics.csv"
      done | awk -F, -v rule="$rule" -v setting="$setting" -v rep="$rep" -v n="$train_examples" '
        {s[$1]+=$2; r[$1]+=n/$2; k[$1]++; if ($1>m) m=$1}
        END {for (e=1;e<=m;e++) if (k[e]) printf "%s,%s,%s,%s,%.3f,%.1f\n", rule, setting, rep, e, s[e]/k[e], r[e]}' \
        >> "$OUT/results.csv"
      echo "rep $rep $rule $setting: ${runs[*]}" >&2
    done
  done
done
echo "training examples/s (median over epochs 2..$EPOCHS of $REPS repetitions); speed-up of 2 ranks × 1 thread over 1 rank × 1 thread:"
awk -F, 'NR>1 && $4>1 {v[$1","$2]=v[$1","$2]" "$6; if(!($1 in seen)){seen[$1]=1; rules[++n]=$1}}
  function med(s,   a,k,i,j,t){k=split(s,a," "); for(i=1;i<=k;i++)for(j=i+1;j<=k;j++)if(a[j]+0<a[i]+0){t=a[i];a[i]=a[j];a[j]=t} return a[int((k+1)/2)]}
  END{for(i=1;i<=n;i++){r=rules[i]; one=med(v[r",one"]); g=med(v[r",same_global"]); p=med(v[r",same_per_rank"]);
      c=med(v[r",independent_pair"]);
      printf "%-10s 1 rank %8.0f/s | 2 ranks, same global batch %8.0f/s (%.2fx) | 2 ranks, same per-rank batch %8.0f/s (%.2fx) | ceiling: 2 independent runs %8.0f/s (%.2fx)\n", r, one, g, g/one, p, p/one, c, c/one}}' "$OUT/results.csv"
# Paired within each repetition (its settings ran within a minute of one another, so the VM's drift over the
# repetitions cancels): each setting's mean examples/s over epochs 2..EPOCHS against the 1-rank run's of the same
# repetition; the median and range of those ratios over the repetitions.
echo "paired per repetition (median over $REPS repetitions, min-max):"
awk -F, 'NR>1 && $4>1 {k=$1","$2","$3; s[k]+=$6; n[k]++; if(!($1 in seen)){seen[$1]=1; rules[++nr]=$1}; if($3>reps)reps=$3}
  function med(a,k,   i,j,t){for(i=1;i<=k;i++)for(j=i+1;j<=k;j++)if(a[j]<a[i]){t=a[i];a[i]=a[j];a[j]=t} return k%2?a[(k+1)/2]:(a[k/2]+a[k/2+1])/2}
  END{split("same_global same_per_rank independent_pair", settings, " ");
      for(i=1;i<=nr;i++){r=rules[i]; line=sprintf("%-10s", r);
        for(q=1;q<=3;q++){m=0; delete a;
          for(rep=1;rep<=reps;rep++){o=r",one,"rep; x=r","settings[q]","rep; if(n[o]&&n[x]) a[++m]=(s[x]/n[x])/(s[o]/n[o])}
          if(m){mn=a[1]; mx=a[1]; for(j=1;j<=m;j++){if(a[j]<mn)mn=a[j]; if(a[j]>mx)mx=a[j]}
                line=line sprintf(" | %s %.2fx (%.2f-%.2f)", settings[q], med(a,m), mn, mx)}}
        print line}}' "$OUT/results.csv"
