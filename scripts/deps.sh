#!/usr/bin/env bash
# Debian packages needed to build aipm and run its tests: Slurm's headers and libclang for
# the plugin's bindgen, the Slurm daemons and munge for the local test cluster, and a font
# for the text of PNG plots.
set -euo pipefail
pkgs="libslurm-dev libclang-dev slurmctld slurmd slurm-client slurmdbd mariadb-server munge fonts-dejavu-core"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
	echo "[deps] apt-get install$missing" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
