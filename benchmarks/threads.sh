#!/usr/bin/env bash
# Epoch time of backprop, ep and dual_prop under each thread setting, in one run:
#
#   benchmarks/threads.sh [BUILD_DIR]      (environment: REPS=3 EPOCHS=2 TRAIN_LIMIT=10000 OUT=bench_threads,
#                                           SETTINGS="auto t1 t2 two_pools passive", RULES="backprop ep dual_prop")
#   benchmarks/threads.sh --summary        the table again, from OUT/results.csv
#
# Settings, each its own `bilevel train` process (the OpenMP wait policy is fixed when a process starts):
#   auto        train.threads=0: the CPUs this process may use, on LibTorch's pool; OpenBLAS on one thread, the
#               products split over LibTorch's pool (kernels/cpu/split_gemm.h); libgomp's default wait policy
#   t1, t2      train.threads=1 / 2, otherwise as auto
#   two_pools   as auto, but OpenBLAS with its own pool of 2 threads (BILEVEL_BLAS_THREADS=2): the arrangement
#               before, with two pools taking turns on the cores
#   passive     as auto, with OMP_WAIT_POLICY=PASSIVE (idle OpenMP workers sleep at once; bilevel imposed it before)
# Every run trains EPOCHS epochs on the first TRAIN_LIMIT training examples (1000 of them held out for validation;
# test 2000); the figure is the median over REPS repetitions of each run's median epoch_seconds (metrics.csv:
# training plus evaluation). Repetitions are interleaved (every setting of every rule, then again) so that drift on a shared
# machine spreads over all settings. Prints a table and writes OUT/results.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
summary_only=0
[ "${1:-}" = --summary ] && summary_only=1 && shift
BUILD_DIR=${1:-${BUILD_DIR:-build}}
BIN="$BUILD_DIR/bilevel"
REPS=${REPS:-3}
EPOCHS=${EPOCHS:-2}
TRAIN_LIMIT=${TRAIN_LIMIT:-10000}
OUT=${OUT:-bench_threads}
SETTINGS=${SETTINGS:-"auto t1 t2 two_pools passive"}
RULES=${RULES:-"backprop ep dual_prop"}
summary() {
  echo "median s/epoch over the repetitions in $OUT/results.csv (ratio to auto):"
  awk -F, 'NR>1{v[$1","$2]=v[$1","$2]" "$4; if(!($1 in seen)){seen[$1]=1; rules[++nr]=$1} if(!($2 in seenS)){seenS[$2]=1; sets[++ns]=$2}}
    function med(s,   a,n,i,j,t){n=split(s,a," "); for(i=1;i<=n;i++)for(j=i+1;j<=n;j++)if(a[j]+0<a[i]+0){t=a[i];a[i]=a[j];a[j]=t} return a[int((n+1)/2)]}
    END{printf "%-10s", "rule"; for(j=1;j<=ns;j++) printf " %16s", sets[j]; print "";
        for(i=1;i<=nr;i++){r=rules[i]; base=med(v[r",auto"]); printf "%-10s", r;
          for(j=1;j<=ns;j++){m=med(v[r","sets[j]]); printf " %7.2f s (%4.2fx)", m, (base>0? m/base : 0)} print ""}}' "$OUT/results.csv"
}
if [ "$summary_only" = 1 ]; then summary; exit 0; fi
[ -x "$BIN" ] || { echo "threads.sh: $BIN not built (cmake --build $BUILD_DIR --target bilevel_cli)" >&2; exit 2; }
mkdir -p "$OUT"
unset OMP_NUM_THREADS OMP_WAIT_POLICY BILEVEL_BLAS_THREADS
source benchmarks/rule_configs.sh
# Another rule runs on the ep config (same network, neurons and loss).
config_or_ep() { config_of "$1" || echo "configs/fmnist_mlp_ep.yaml rule.name=$1"; }
echo "rule,setting,rep,epoch_seconds,threads,omp_wait_policy" > "$OUT/results.csv"
"$BIN" env | grep -E '^(cpus_available|cpu_affinity|cpu_quota|cpu_model|blas):' || true
for rep in $(seq 1 "$REPS"); do
  for rule in $RULES; do
    for setting in $SETTINGS; do
      envs=() threads=0
      case "$setting" in
        auto) ;;
        two_pools) envs=(BILEVEL_BLAS_THREADS=2) ;;
        passive) envs=(OMP_WAIT_POLICY=PASSIVE) ;;
        t*) threads=${setting#t} ;;
        *) echo "threads.sh: unknown setting $setting" >&2; exit 2 ;;
      esac
      # shellcheck disable=SC2046
      dir=$(env "${envs[@]}" "$BIN" train $(config_or_ep "$rule") train.epochs="$EPOCHS" train.threads="$threads" \
              data.train_limit="$TRAIN_LIMIT" data.validation=1000 data.test_limit=2000 checkpoint.every=1000 \
              scheduler.name=none output.root="$OUT/runs" experiment.name="${rule}_${setting}" 2>/dev/null)
      secs=$(awk -F, 'NR==1{for(i=1;i<=NF;i++) if($i=="epoch_seconds") c=i; next} {print $c}' "$dir/metrics.csv" \
             | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
      used=$(awk '/^ *threads:/{sub(/^ *threads: */, ""); print; exit}' "$dir/meta.yaml" | tr -d '"')
      policy=$(awk '/^ *omp_wait_policy:/{sub(/^ *omp_wait_policy: */, ""); print; exit}' "$dir/meta.yaml" | tr -d '"')
      echo "$rule,$setting,$rep,$secs,\"$used\",\"$policy\"" >> "$OUT/results.csv"
      printf '%-10s %-10s rep %d: %6.2f s/epoch  threads %s, %s\n' "$rule" "$setting" "$rep" "$secs" "$used" "$policy"
    done
  done
done
echo
summary
