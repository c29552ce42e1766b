#!/usr/bin/env bash
# Installs what the project needs on a fresh machine: system packages, Python 3.12, the virtualenv.
# Idempotent: each step checks first. Fails with a clear message when something cannot be had.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${VENV:-.venv}
CONSTRAINTS=infra/mwaa/constraints-3.12.txt

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# 1. Debian packages that mysqlclient (the MySQL provider's driver) builds against, and Chromium,
#    which the browser test (tests/integration/test_ui_browser.py) drives through Playwright.
need_pkgs=()
for pkg in pkg-config default-libmysqlclient-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
if ((${#need_pkgs[@]})); then
  command -v apt-get >/dev/null || die "missing ${need_pkgs[*]} and no apt-get to install them"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  say "installing Debian packages: ${need_pkgs[*]}"
  $SUDO apt-get update -qq || die "apt-get update failed"
  $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null || die "apt-get install ${need_pkgs[*]} failed"
fi

# 2. Python 3.12: MWAA's constraints for Airflow 3.3.1 only resolve on it.
find_python() {
  local candidate
  if candidate=$(command -v python3.12 2>/dev/null) && "$candidate" -c 'import sys' >/dev/null 2>&1; then
    echo "$candidate"; return 0
  fi
  if command -v pyenv >/dev/null 2>&1; then
    local root; root=$(pyenv root)
    for candidate in $(ls -d "$root"/versions/3.12* 2>/dev/null | sort -V -r); do
      [ -x "$candidate/bin/python3.12" ] && { echo "$candidate/bin/python3.12"; return 0; }
    done
  fi
  return 1
}
if [ ! -x "$VENV/bin/python" ]; then
  PY312=$(find_python) || {
    if command -v pyenv >/dev/null 2>&1; then
      say "no Python 3.12 found; trying: pyenv install 3.12"
      pyenv install -s 3.12 || die "pyenv install 3.12 failed; install Python 3.12 and re-run"
      PY312=$(find_python) || die "Python 3.12 still not found after pyenv install"
    else
      die "Python 3.12 is required (MWAA's Airflow 3.3.1 constraints need it): put python3.12 on PATH or install pyenv"
    fi
  }
  say "creating $VENV with $PY312"
  "$PY312" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
"$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 12), sys.version' \
  || die "$VENV is not a Python 3.12 virtualenv; remove it and re-run"

# 3. Python packages, all against MWAA's constraints (requirements.txt carries the --constraint line).
say "installing Python packages against $CONSTRAINTS"
mkdir -p .local/logs
if ! "$VENV/bin/python" -m pip install -q -r requirements-dev.txt >.local/logs/pip-install.log 2>&1; then
  grep -v "is ignored: it is neither" .local/logs/pip-install.log | tail -30 >&2
  die "pip install failed (full log: .local/logs/pip-install.log)"
fi
"$VENV/bin/python" -m pip check >/dev/null || die "pip check failed: $("$VENV/bin/python" -m pip check)"
"$VENV/bin/python" -c 'import airflow; assert airflow.__version__ == "3.3.1", airflow.__version__'
say "installed: Airflow $("$VENV/bin/python" -c 'import airflow; print(airflow.__version__)') on $("$VENV/bin/python" -V)"

# 4. Infrastructure tools (checkov, for tests/unit/test_terraform.py) in their own virtualenv:
#    their pins clash with MWAA's constraints. Reinstalled only when their requirements change.
TOOLS_VENV=${TOOLS_VENV:-.venv-tools}
TOOLS_REQUIREMENTS=infra/terraform/requirements-tools.txt
if [ ! -x "$TOOLS_VENV/bin/python" ]; then
  TOOLS_PY=$(find_python) || TOOLS_PY=$("$VENV/bin/python" -c 'import sys; print(sys._base_executable)')
  say "creating $TOOLS_VENV with $TOOLS_PY"
  "$TOOLS_PY" -m venv "$TOOLS_VENV"
fi
if ! cmp -s "$TOOLS_REQUIREMENTS" "$TOOLS_VENV/.installed-requirements"; then
  say "installing infrastructure tools into $TOOLS_VENV"
  if ! "$TOOLS_VENV/bin/python" -m pip install -q -r "$TOOLS_REQUIREMENTS" >.local/logs/pip-tools.log 2>&1; then
    grep -v "is ignored: it is neither" .local/logs/pip-tools.log | tail -30 >&2
    die "pip install of $TOOLS_REQUIREMENTS failed (full log: .local/logs/pip-tools.log)"
  fi
  cp "$TOOLS_REQUIREMENTS" "$TOOLS_VENV/.installed-requirements"
fi
