#!/usr/bin/env bash
# Run launcher/preflight.py on a GPU machine and keep what the repository records of it:
#   $OUT/preflight-<gpu>-<n>gpu.txt  the printed lines, the exit code and wall time, then the JSON
#   $OUT/smi-*.txt                   raw nvidia-smi outputs, golden inputs for the CPU parser tests
# Usage (repository root, on the device machine): bash benchmarks/preflight_device.sh [preflight args]
# NVLink multicast stays off in everything started from here (the preflight sets it for its workers too).
set -uo pipefail
out=${OUT:-/tmp/preflight-out}
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

ntotal=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
n=$ntotal
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then  # nvidia-smi ignores it; the preflight (like CUDA) does not
    n=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)
fi
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | grep -oE '\b[A-Z][0-9]{3}\b' | head -1 \
      | tr '[:upper:]' '[:lower:]')
name="preflight-${gpu:-gpu}-${n}gpu"

start=$(date +%s.%N)
"$python" launcher/preflight.py --json "$out/$name.json" --mode enforce --expect-gpus "$n" "$@" \
    >"$out/$name.lines" 2>"$out/$name.stderr"
rc=$?
end=$(date +%s.%N)
wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

{
    echo "# launcher/preflight.py on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# command: ${CUDA_VISIBLE_DEVICES:+CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES }python3 launcher/preflight.py --json OUT.json --mode enforce --expect-gpus $n $*"
    echo "# exit code $rc; wall time ${wall} s including the interpreter's start"
    echo "# --- printed lines (stdout) ---"
    cat "$out/$name.lines"
    echo "# --- stderr ---"
    cat "$out/$name.stderr"
    echo "# --- OUT.json ---"
    cat "$out/$name.json"
} >"$out/$name.txt"
rm -f "$out/$name.lines" "$out/$name.stderr" "$out/$name.json"

# Raw nvidia-smi outputs, for tests/test_preflight*.py fixtures.
{
    nvidia-smi --query-gpu=index,uuid,name,pci.bus_id,memory.total,memory.used,driver_version \
        --format=csv,noheader,nounits
} >"$out/smi-basic-${ntotal}gpu.txt" 2>&1
{
    nvidia-smi --query-gpu=index,ecc.mode.current,ecc.errors.uncorrected.volatile.total,ecc.errors.corrected.volatile.total,remapped_rows.pending,remapped_rows.failure \
        --format=csv,noheader,nounits
} >"$out/smi-ecc-${ntotal}gpu.txt" 2>&1
nvidia-smi topo -m >"$out/smi-topo-${ntotal}gpu.txt" 2>&1
nvidia-smi >"$out/smi-plain-${ntotal}gpu.txt" 2>&1

cat "$out/$name.txt" | sed -n '1,/--- OUT.json ---/p'
exit 0
