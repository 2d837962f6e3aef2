#!/usr/bin/env bash
# The main job: `urlvr demo` on the built-in testbed (installs what it needs first).
source "$(dirname "$0")/env.sh"
exec urlvr demo "$@"
