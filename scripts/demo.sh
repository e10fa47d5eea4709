#!/usr/bin/env bash
# Set up and start the demo: a health bureau's organisation tree, its people and a campaign.
source "$(dirname "$0")/_env.sh"
ensure_venv ""
.venv/bin/dangjian db upgrade
.venv/bin/dangjian demo
.venv/bin/dangjian campaign status 1
