#!/usr/bin/env bash
# Install Debian's headless-capable Chromium and its WebDriver for the demo's browser test.
# Idempotent: a quick no-op when both are present. Never fails the set-up: if it cannot install
# (no root, no apt, no network) it says why and exits 0, and the browser test then skips.
set -u

CHROMIUM=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver

if [[ -x "$CHROMIUM" && -x "$DRIVER" ]]; then
  echo "install_browser: chromium and chromedriver already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: apt-get not found; cannot install chromium (the browser test will skip)"
  exit 0
fi

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install_browser: not root and no passwordless sudo; cannot install chromium (the browser test will skip)"
    exit 0
  fi
fi

export DEBIAN_FRONTEND=noninteractive
LOG="$(mktemp -t install_browser.XXXXXX.log)"
echo "install_browser: installing chromium and chromium-driver with apt-get (about 30 s)"
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; } \
  >"$LOG" 2>&1; then
  tail -n 5 "$LOG"
  echo "install_browser: apt-get could not install chromium/chromium-driver (the browser test will skip)"
  exit 0
fi
rm -f "$LOG"

if [[ -x "$CHROMIUM" && -x "$DRIVER" ]]; then
  echo "install_browser: installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
else
  echo "install_browser: apt-get finished but $CHROMIUM or $DRIVER is missing (the browser test will skip)"
fi
exit 0
