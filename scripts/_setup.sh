# Shared by scripts/dev and scripts/test: make sure the Python environment exists.
# Sourced, not run. Creates .venv and installs Syncline (editable) with its dev tools.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Syncline needs Python 3.11 or newer (found: $("$PYTHON" --version 2>&1))." >&2
  echo "Set PYTHON=/path/to/python3.11 and run again." >&2
  exit 1
fi

# The integration tests run real ZooKeeper and Redis servers (PostgreSQL is expected installed),
# and skew a scheduler's clock with libfaketime.
missing_packages=()
for package in zookeeper redis-server faketime; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing_packages+=("$package")
  fi
done
if [ "${#missing_packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "==> Installing system packages: ${missing_packages[*]}" >&2
    # Try without refreshing the package lists first: usually they are recent enough.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing_packages[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing_packages[@]}" >/dev/null; } \
      || echo "Could not install ${missing_packages[*]}; the integration tests will fail." >&2
  else
    echo "The integration tests need the Debian packages ${missing_packages[*]}:" \
      "install them as root (apt-get install -y ${missing_packages[*]})." >&2
  fi
fi

stamp=.venv/.syncline-installed
if [ ! -x .venv/bin/python ]; then
  echo "==> Creating the Python environment in .venv" >&2
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> Installing Syncline and its dependencies into .venv" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
