#!/usr/bin/env bash
# Everything issue 26 asks of a lent NVIDIA machine, in one call: the doctor with training, the
# bench, a plain torch.matmul reference, GPU assignment against the real nvidia-smi, and what
# determinism costs. Files go to $OUT (8, as many as come back); the summary is printed last.
#
#   OUT=/tmp/out benchmarks/gpu-run.sh            # on the GPU machine (python3 holds torch + JAX)
#   OUT=/tmp/out benchmarks/gpu-run.sh --rehearse # here: the same steps on the CPU, tiny sizes
#   STEPS="reference clock bench" ...             # only these steps (a rerun)
#
# Keras travels as wheels in ./whl (keras, namex, optree), installed into /tmp/site.
set -uo pipefail

expect=cuda mode=full ref_args=(--sustained 10) python=${PYTHON:-python3}
steps=${STEPS:-gpus doctor reference bench determinism}
if [[ ${1:-} == --rehearse ]]; then
    expect=cpu mode=tiny ref_args=(--device cpu --n 256)
fi
mkdir -p "$OUT"
log=$OUT/log.txt
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run with a time limit, stderr to the log, say how long
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    [[ " $steps " == *" $name "* || $name == keras-wheels ]] || return 0
    echo "=== $name ($(date -u +%T))" | tee -a "$log"
    timeout "$limit" "$@" 2>>"$log"
    local rc=$?
    echo "=== $name: exit $rc, $((SECONDS - start)) s" | tee -a "$log"
    return $rc
}

{
    uname -a
    $python --version
    nvidia-smi 2>&1 || echo "no nvidia-smi"
    # clocks, power and temperature: read only, never set
    nvidia-smi --query-gpu=name,driver_version,pstate,clocks.sm,clocks.max.sm,clocks.mem,power.draw,power.limit,temperature.gpu --format=csv 2>&1
    cat /proc/driver/nvidia/version 2>&1
    $python -m pip list 2>/dev/null | grep -iE '^(torch|jax|jaxlib|jax-cuda|numpy|ml.dtypes|h5py|matplotlib|keras|optree|namex|rich|absl) '
} >>"$log" 2>&1

if compgen -G "whl/*.whl" >/dev/null; then
    step keras-wheels 120 "$python" -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/site whl/*.whl
fi
step gpus 60 sh -c "$python benchmarks/gpu_assign.py > '$OUT/gpus.json'"
step doctor 240 sh -c "$python -m dllab doctor --expect $expect --train --json > '$OUT/doctor.json'"
if [[ $expect == cuda ]]; then  # clocks, power and why they are limited, every 100 ms from here on
    nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active \
        --format=csv,noheader -lms 100 >"$OUT/smi.csv" 2>&1 &
    sampler=$!
fi
step reference 120 sh -c "$python benchmarks/matmul_reference.py ${ref_args[*]} > '$OUT/reference.json'"
bench_mode=()
[[ $mode == full ]] || bench_mode=("--$mode")
rm -rf /tmp/dllab-bench  # a fresh folder: its one chart is this run's
if step bench 360 "$python" -m dllab bench --expect $expect "${bench_mode[@]}" --out /tmp/dllab-bench; then
    cp /tmp/dllab-bench/latest.json "$OUT/bench.json"
    cp /tmp/dllab-bench/bench-*.png "$OUT/bench.png"
fi
doctor_json=$([[ -s $OUT/doctor.json ]] && echo "$OUT/doctor.json")
step determinism 180 sh -c "$python benchmarks/gpu_determinism.py $expect $mode $doctor_json > '$OUT/determinism.json'"
[[ -z ${sampler:-} ]] || kill "$sampler"
$python benchmarks/gpu_summary.py "$OUT"
