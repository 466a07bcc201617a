#!/bin/sh
# The npm packages of the TypeScript agent test (tests/e2e/test_typescript_agent.py): openai,
# typescript and node's types, at the versions package-lock.json pins, into tests/node/node_modules
# (never globally). Named by the README's test command and so run by .ci/run. Without node and
# npm, or when the registry cannot be reached, it says so and those tests skip with the reason.
set -eu
cd "$(dirname "$0")"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "tests/node/install.sh: no node and npm; the TypeScript agent tests will be skipped" >&2
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error >&2 ||
    echo "tests/node/install.sh: npm ci failed; the TypeScript agent tests will be skipped" >&2
