#!/usr/bin/env bash
# Regenerate docs/html-report.png (one target) and docs/html-report-multi.png (a config with three
# targets) from real runs, drawn by headless Chromium. Runs in a scratch folder, so every path the
# report prints is relative (gradcheck's own builtins show as gradcheck_cli/load/zoo/...).
#   scripts/html_screenshots.sh            (needs `chromium`; apt-get install -y chromium)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
gradcheck="${GRADCHECK:-$root/.venv/bin/gradcheck}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
export OMP_NUM_THREADS=1
"$gradcheck" analyze builtin:sigmoid-mlp --arch-opt depth=10 --device cpu --format html --output single.html || true
cat > gradcheck.yaml <<'YAML'
device: cpu
reports:
  - {format: html, output: multi.html}
targets:
  - target: builtin:sigmoid-mlp
    arch-opt: {depth: 10}
  - target: builtin:vanilla-rnn
  - target: builtin:bn-cnn
YAML
"$gradcheck" analyze > /dev/null || true
shoot() { chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="$3" --screenshot="$2" "file://$work/$1" 2>/dev/null; }
shoot single.html "$root/docs/html-report.png" 1000,1120
shoot multi.html "$root/docs/html-report-multi.png" 1000,2000
echo "wrote docs/html-report.png and docs/html-report-multi.png"
