#!/usr/bin/env bash
# Debian packages the tests use: chromium (studio tests in a real browser), libosmesa6 (offscreen
# rendering), dicom3tools (dciodvfy validates written DICOM). Installed only when missing; without
# root or apt the tests that need them report themselves as skipped.
set -uo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
ldconfig -p 2>/dev/null | grep -q libOSMesa || missing+=(libosmesa6)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "not installing ${missing[*]} (needs root and apt-get); tests that need them will be skipped" >&2
  exit 0
fi
echo "installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || echo "could not install ${missing[*]}; tests that need them will be skipped" >&2
exit 0
