#!/bin/sh
# Installs Debian's chromium and chromium-driver, the headless browser that
# tests/rating/test_browser.py drives (through Playwright, with this binary: nothing is
# downloaded at run time). Needs apt-get and root; elsewhere it says so and exits 0, and that
# test skips with the reason. Safe to run again: it does nothing once the browser is there.
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "install_chromium: needs apt-get as root; the rating browser test will be skipped" >&2
  exit 0
fi
apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
  || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null 2>&1; } \
  || echo "install_chromium: could not install chromium; the rating browser test will be skipped" >&2
exit 0
