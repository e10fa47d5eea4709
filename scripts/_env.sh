# Shared by scripts/demo.sh, scripts/test.sh and .ci/run: make .venv with the project installed,
# and (for the tests) Debian's Chromium and a CJK font.
# Install markers: .venv/.installed-<hash of pyproject.toml>-<base|dev>. A dev install includes
# the base one, so demo.sh after test.sh installs nothing; alternating never reinstalls; only a
# changed pyproject.toml does (and clears the markers of older hashes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

find_python() {
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "需要 Python 3.11 或更新版本 / Python 3.11+ is required" >&2
  return 1
}

# The marker prefix for the current pyproject.toml.
marker_prefix() {
  echo ".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
}

# Whether the extras asked for ("" or "dev") are installed for this pyproject.toml.
installed() {
  local prefix
  prefix="$(marker_prefix)"
  [ -f "$prefix-${1:-base}" ] || { [ -z "$1" ] && [ -f "$prefix-dev" ]; }
}

ensure_venv() {
  local extras="$1"
  local py prefix
  py="$(find_python)"
  if [ ! -x .venv/bin/python ]; then
    echo "创建虚拟环境 / creating .venv …"
    "$py" -m venv .venv
  fi
  if installed "$extras"; then return 0; fi
  echo "安装依赖 / installing dependencies (first run takes a minute or two) …"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
  prefix="$(marker_prefix)"
  find .venv -maxdepth 1 -name '.installed-*' ! -name "${prefix#.venv/}-*" -delete
  touch "$prefix-${extras:-base}"
}

BROWSER_PACKAGES="chromium fonts-wqy-microhei poppler-utils"
BROWSER_HOW="浏览器测试需要 Chromium 与中文字体，请运行：sudo apt-get install -y ${BROWSER_PACKAGES}（或设 DANGJIAN_NO_BROWSER=1 跳过浏览器测试）/ the browser tests need: sudo apt-get install -y ${BROWSER_PACKAGES} (or set DANGJIAN_NO_BROWSER=1)"

browser_ready() {
  command -v pdftotext >/dev/null 2>&1 &&  # the PDF tests read their text with it
  [ -x "${DANGJIAN_CHROMIUM:-/usr/bin/chromium}" ] &&
    { dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || fc-list ':lang=zh' 2>/dev/null | grep -q .; }
}

# Chromium and a CJK font (without it the screenshots show boxes for Chinese text), installed
# with apt-get when missing: as root, or through sudo when it needs no password. When that is
# not possible it says in one line how, and fails. DANGJIAN_NO_BROWSER=1 skips all of this (the
# browser tests then skip, or fail under CI).
ensure_browser() {
  if [ "${DANGJIAN_NO_BROWSER:-}" = "1" ] || browser_ready; then return 0; fi
  local sudo=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then sudo="sudo -n"; else
      echo "$BROWSER_HOW" >&2
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$BROWSER_HOW" >&2
    return 1
  fi
  echo "== installing Chromium and a CJK font (Debian packages) for the browser tests"
  # shellcheck disable=SC2086
  $sudo apt-get install -y -q --no-install-recommends $BROWSER_PACKAGES >/dev/null 2>&1 ||
    { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends $BROWSER_PACKAGES >/dev/null; } ||
    true
  if ! browser_ready; then
    echo "$BROWSER_HOW" >&2
    return 1
  fi
}
