#!/usr/bin/env bash
# The outside portal end to end: a real outside IdP (oidc-provider), the real airlock-sender
# (portal) and airlock-receiver, headless Chromium. Builds what it needs, installs the npm
# packages from package-lock.json, runs the test. Needs node >= 20 and Debian's chromium
# (apt-get install -y chromium); CHROMIUM=/path overrides the browser.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "chromium not found at ${CHROMIUM:-/usr/bin/chromium}: apt-get install -y chromium" >&2
  exit 1
fi
(cd "$ROOT" && cargo build -p airlock-sender -p airlock-receiver)
npm ci --no-audit --no-fund
exec npm test
