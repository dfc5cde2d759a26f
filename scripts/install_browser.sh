#!/usr/bin/env bash
# Install what the viewer's browser tests need: Debian's Chromium (the tests drive it with
# Playwright from PyPI, in the dev extra; Playwright's own browser download is never used).
# Idempotent; prints a warning and exits 0 when it cannot install (the tests then skip and say why).
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "warning: chromium is not installed and this is not a root Debian machine: the browser tests will be skipped" >&2
  exit 0
fi
echo "installing Debian's chromium for the viewer's browser tests (about a minute)" >&2
if ! (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); then
  echo "warning: apt-get could not install chromium: the browser tests will be skipped" >&2
fi
exit 0
