#!/usr/bin/env bash
# GPU check: the device tests, an analysis per precision and the overhead benchmark, on cuda.
# Installs nothing: it uses the Python in $PYTHON (default: .venv/bin/python if present, else python3),
# which must already have a CUDA build of torch, pytest and this package's dependencies.
# Usage: scripts/gpu-check.sh        Exit status: 0 when every row is ok, 1 otherwise.
# GPU_CHECK_DEVICE=cpu scripts/gpu-check.sh is a dry run of the script itself on a machine without a GPU.
set -u
cd "$(dirname "$0")/.."

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
LOG=$(mktemp -d)
ROWS=()
FAILED=0

row() {  # row NAME RESULT SECONDS
    ROWS+=("$(printf '%-38s %-34s %7s' "$1" "$2" "$3")")
    [[ "$2" == ok* || "$2" == healthy* || "$2" == skipped* ]] || FAILED=1
}

timed() {  # timed LOGFILE CMD...: runs CMD, prints its wall time in seconds, returns its status
    local start end status
    start=$(date +%s.%N)
    "${@:2}" >"$1" 2>&1
    status=$?
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }'
    return $status
}

ON=${GPU_CHECK_DEVICE:-cuda}
REQUIRE_CUDA=1
if [[ "$ON" == cpu ]]; then
    DEVICE="cpu (dry run: GPU tests skip)"
    REQUIRE_CUDA=0
else
    DEVICE=$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>/dev/null)
fi
if [[ -z "$DEVICE" ]]; then
    echo "gpu-check: no CUDA device visible to $PYTHON ($("$PYTHON" -c 'import torch; print("torch", torch.__version__)' 2>&1 | tail -1))" >&2
    echo "hint: run it on a machine with a GPU, or set PYTHON to an interpreter with a CUDA build of torch" >&2
    exit 1
fi
TORCH=$("$PYTHON" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')

# 1. The device and precision tests; a GPU test that would skip fails instead.
secs=$(timed "$LOG/pytest.txt" env GRADCHECK_REQUIRE_CUDA=$REQUIRE_CUDA "$PYTHON" -m pytest -q -rN -o addopts= -p no:cacheprovider \
    tests/test_device.py tests/test_precision.py)
status=$?
summary=$(grep -E '(passed|failed|error)' "$LOG/pytest.txt" | tail -1 | sed 's/=//g; s/ in [0-9.]*s.*//; s/^ *//')
if [[ $status -eq 0 ]]; then row "device + precision tests" "ok: $summary" "$secs"; else row "device + precision tests" "FAIL: $summary" "$secs"; fi

# 2. One analysis per precision on the device: the verdict and the time it took.
for target in builtin:transformer builtin:bn-cnn; do
    for dtype in float32 bfloat16 float16; do
        secs=$(timed "$LOG/analyze.txt" "$PYTHON" -m gradcheck_cli analyze "$target" --device "$ON" --dtype "$dtype" --format json --output "$LOG/report.json")
        status=$?
        verdict=$(tail -1 "$LOG/analyze.txt" | sed 's/^gradcheck: //; s/;.*//' | cut -c1-34)
        if [[ $status -le 1 ]] && grep -q "\"device\": \"$ON" "$LOG/report.json" 2>/dev/null; then
            row "analyze $target $dtype" "$verdict" "$secs"
        else
            row "analyze $target $dtype" "FAIL (exit $status)" "$secs"
            cp "$LOG/analyze.txt" "$LOG/analyze-$dtype-${target#builtin:}.txt"
        fi
    done
done

# 3. The overhead benchmark, when this checkout has it.
if [[ -f benchmarks/overhead.py ]]; then
    secs=$(timed "$LOG/bench.txt" "$PYTHON" benchmarks/overhead.py --device "$ON")
    if [[ $? -eq 0 ]]; then row "benchmarks/overhead.py --device $ON" "ok" "$secs"; else row "benchmarks/overhead.py --device $ON" "FAIL" "$secs"; fi
else
    row "benchmarks/overhead.py --device $ON" "skipped (not in this checkout)" "-"
fi

echo "gradcheck gpu-check · $DEVICE · torch $TORCH"
printf '%-38s %-34s %7s\n' "check" "result" "seconds"
printf '%s\n' "${ROWS[@]}"
if [[ -s "$LOG/bench.txt" ]]; then echo; echo "benchmark output:"; tail -20 "$LOG/bench.txt"; fi
if [[ $FAILED -ne 0 ]]; then
    echo; echo "failures (logs in $LOG):"
    grep -E '^(FAILED|ERROR)' "$LOG/pytest.txt" | head -20
    for f in "$LOG"/analyze-*.txt; do [[ -f "$f" ]] && { echo "--- $f"; tail -5 "$f"; }; done
fi
exit $FAILED
