#!/usr/bin/env bash
# Install Debian's Chromium and ChromeDriver for the rendered-book browser test, if missing.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "setup_browser: chromium and chromedriver present"
  exit 0
fi
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  echo "setup_browser: need root (or sudo) to install the Debian packages chromium and chromium-driver" >&2
  exit 2
fi
echo "setup_browser: installing chromium and chromium-driver with apt-get"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
echo "setup_browser: done"
