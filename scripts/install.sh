#!/usr/bin/env bash
# Install aipm on a Slurm host (every compute node, the controller, the login hosts):
#   - libaipm_spank.so into Slurm's plugin directory (asked from `scontrol show config`,
#     else Debian's /usr/lib/x86_64-linux-gnu/slurm-wlm);
#   - its plugstack line /etc/slurm/plugstack.conf.d/aipm.conf (kept if already there);
#   - aipm-analyze into PREFIX/bin, the controller epilog into PREFIX/lib/aipm;
#   - the spool (root-owned, 0755), and the example cron and systemd files into
#     PREFIX/share/aipm/contrib (nothing is enabled).
#
#   sudo scripts/install.sh [--prefix /usr/local] [--plugin-dir DIR] [--spool /var/spool/aipm]
#                           [--from DIR]    (built files from DIR, no build)
#
# DESTDIR=/some/root installs under that root (for packaging and for checking the script).
# Then: restart slurmd on the node, and run `sudo aipm-analyze doctor`.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=/usr/local
plugin_dir=""
spool=/var/spool/aipm
build=1
target=${CARGO_TARGET_DIR:-target}/release
while [ $# -gt 0 ]; do
	case "$1" in
		--prefix) prefix=$2; shift 2 ;;
		--plugin-dir) plugin_dir=$2; shift 2 ;;
		--spool) spool=$2; shift 2 ;;
		--from) target=$2; build=0; shift 2 ;;
		-h|--help) sed -n '2,15p' "$0"; exit 0 ;;
		*) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
root=${DESTDIR:-}
if [ "$build" = 1 ]; then
	cargo build --release -p aipm-spank -p aipm-analyze
fi
for f in "$target/libaipm_spank.so" "$target/aipm-analyze"; do
	[ -f "$f" ] || { echo "install.sh: $f missing: build first (or drop --from)" >&2; exit 1; }
done
if [ -z "$plugin_dir" ]; then
	plugin_dir=$(scontrol show config 2>/dev/null | sed -n 's/^PluginDir *= *\([^:]*\).*/\1/p' || true)
	plugin_dir=${plugin_dir:-/usr/lib/x86_64-linux-gnu/slurm-wlm}
fi
say() { echo "[install] $*"; }

# `install` writes a new inode: slurmd keeps the old plugin mapped, and must not see it change.
install -D -m 0755 "$target/libaipm_spank.so" "$root$plugin_dir/libaipm_spank.so"
say "plugin    $plugin_dir/libaipm_spank.so"
install -D -m 0755 "$target/aipm-analyze" "$root$prefix/bin/aipm-analyze"
say "command   $prefix/bin/aipm-analyze"
conf=$root/etc/slurm/plugstack.conf.d/aipm.conf
if [ -e "$conf" ]; then
	say "kept      /etc/slurm/plugstack.conf.d/aipm.conf (already there)"
else
	install -d -m 0755 "$root/etc/slurm/plugstack.conf.d"
	sed -e "s|/usr/local/lib/aipm/libaipm_spank.so|$plugin_dir/libaipm_spank.so|" \
		-e "s|spool=/var/spool/aipm |spool=$spool |" plugstack.conf.d/aipm.conf > "$conf.tmp"
	chmod 0644 "$conf.tmp" && mv "$conf.tmp" "$conf"
	say "plugstack /etc/slurm/plugstack.conf.d/aipm.conf"
fi
grep -qs 'plugstack.conf.d' "$root/etc/slurm/plugstack.conf" ||
	say "note: /etc/slurm/plugstack.conf has no 'include /etc/slurm/plugstack.conf.d/*.conf' line: add it"
install -d -o root -g root -m 0755 "$root$spool"
say "spool     $spool"
install -d -m 0755 "$root$prefix/lib/aipm" "$root$prefix/share/aipm/contrib"
sed "s|/usr/local/bin/aipm-analyze|$prefix/bin/aipm-analyze|" contrib/aipm-epilog-slurmctld.sh \
	> "$root$prefix/lib/aipm/aipm-epilog-slurmctld.sh"
chmod 0755 "$root$prefix/lib/aipm/aipm-epilog-slurmctld.sh"
say "epilog    $prefix/lib/aipm/aipm-epilog-slurmctld.sh (EpilogSlurmctld=, optional)"
for f in contrib/*; do
	sed "s|/usr/local/bin/aipm-analyze|$prefix/bin/aipm-analyze|g" "$f" > "$root$prefix/share/aipm/$f"
done
say "examples  $prefix/share/aipm/contrib (cron, systemd timers: copy and enable what you use)"
say "next: restart slurmd here, then: sudo $prefix/bin/aipm-analyze doctor"
