#!/usr/bin/env bash
# A real Slurm on this machine, with the aipm plugin and simulated sensors, for the tests
# and the demo. Debian 12, as root, without systemd (daemons started by hand).
#
#   tests/slurm/cluster.sh start [--nodes N]   install what is missing, configure, start
#   tests/slurm/cluster.sh stop                stop everything this script started, by pid file
#   tests/slurm/cluster.sh status
#
# One node (the default) is named after the host. With --nodes N (N >= 2) there are N nodes
# n1..nN, each its own slurmd on this host (Debian's Slurm is built for several slurmd per
# host: `slurmd -N nK`, cgroups in slurm_nK), each with its own port, spool and log (`%n`
# in slurm.conf), its own simulated RAPL tree (node K: package (30+10K) W, DRAM 6 W) and its
# own two stand-in GPUs (GPU 0 of node K: (200+100K) W), found by the plugin through `%n` in
# its plugstack paths, and its own lock directory.
#
# Knobs (environment):
#   AIPM_PLUGIN=/abs/libaipm_spank.so   plugin to install (default: the build in $CARGO_TARGET_DIR)
#   AIPM_ANALYZE=/abs/aipm-analyze      runs the simulated RAPL node (default: same build)
#   AIPM_PLUGIN_ARGS="default=on ..."   extra plugstack arguments
#   AIPM_SLURM_DIR=/var/tmp/aipm-slurm  state, pid and log files
#   AIPM_SPOOL=/var/spool/aipm-test     spool of the recordings
#   AIPM_SIM_WATTS="package-0=40 package-0/dram=6"   simulated constant powers
#   AIPM_NVML_STANDIN=/abs/libaipm_nvml_standin.so      stand-in NVML for the 2 simulated GPUs
#   AIPM_SIM_GPU0_WATTS=300                              power of simulated GPU 0
#   NO_INSTALL=1                        skip apt-get
#
# Slurm accounting is real: MariaDB (started by hand, socket only) and slurmdbd, so that
# sacct and sacctmgr work as on a production cluster.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../../target}
SLURM_DIR=${AIPM_SLURM_DIR:-/var/tmp/aipm-slurm}
LOG=$SLURM_DIR/log
SPOOL=${AIPM_SPOOL:-/var/spool/aipm-test}
SIM_ROOT=$SLURM_DIR/sim-powercap
PLUGIN=${AIPM_PLUGIN:-$target/debug/libaipm_spank.so}
ANALYZE=${AIPM_ANALYZE:-$target/debug/aipm-analyze}
SIM_WATTS=${AIPM_SIM_WATTS:-"package-0=40 package-0/dram=6"}
STANDIN=${AIPM_NVML_STANDIN:-$target/debug/libaipm_nvml_standin.so}
NVML_DIR=$SLURM_DIR/nvml
GPU0_W=${AIPM_SIM_GPU0_WATTS:-300}
PLUGIN_DEST=/usr/local/lib/aipm/libaipm_spank.so
TEST_USERS="aipmtest aipmtest2"
NODES=${AIPM_NODES:-1}
# The controller and slurmdbd run as a real site runs them: as slurm, not root (Debian's
# packages create the user). slurmd stays root, as it must.
SLURM_USER=slurm
DB_DIR=$SLURM_DIR/mysql
DB_SOCKET=/run/mysqld/mysqld.sock
DB_PID=/run/mysqld/aipm-mariadb.pid
EPILOG=$SLURM_DIR/epilog-slurmctld.sh
CONTRIB=$here/../../contrib

log() { echo "[cluster] $*" >&2; }

# The Slurm names of the nodes: the host's for one node, n1..nN for several.
node_names() {
	if [ "$NODES" -eq 1 ]; then hostname -s; else seq -f 'n%g' 1 "$NODES"; fi
}

slurmd_spool() { if [ "$NODES" -eq 1 ]; then echo "$SLURM_DIR/d"; else echo "$SLURM_DIR/d-$1"; fi; }

# Per-node paths of the simulated sensors: the plugin finds them through %n.
sim_root() { if [ "$NODES" -eq 1 ]; then echo "$SIM_ROOT"; else echo "$SLURM_DIR/sim-$1/powercap"; fi; }
nvml_dir() { if [ "$NODES" -eq 1 ]; then echo "$NVML_DIR"; else echo "$NVML_DIR/$1"; fi; }

wait_for() { # wait_for SECONDS CMD...
	local end=$(( $(date +%s) + $1 )); shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -ge "$end" ] && return 1
		sleep 0.2
	done
}

stop_pidfile() { # stop_pidfile NAME FILE
	local pid
	[ -f "$2" ] || return 0
	pid=$(cat "$2" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && { log "$1 did not stop, SIGKILL"; kill -9 "$pid" || true; }
	fi
	rm -f "$2"
}

install_packages() {
	[ "${NO_INSTALL:-0}" = 1 ] && return 0
	local missing=""
	for p in munge slurmctld slurmd slurm-client slurmdbd mariadb-server libslurm-dev libclang-dev perl; do
		dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	log "apt-get install$missing"
	apt-get update -qq
	# policy-rc.d keeps postinst from starting services: we start them ourselves.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

write_config() {
	local host cpus mem proctrack task gather
	host=$(hostname -s)
	getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >> /etc/hosts
	cpus=$(nproc)
	mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
	mem=${mem:-2048}; [ "$mem" -gt 2048 ] && mem=$(( mem - 1024 ))
	# cgroup v1 (or hybrid) works without systemd; pure v2 needs slurmd under systemd.
	if [ "$(stat -fc %T /sys/fs/cgroup)" = tmpfs ] && [ -d /sys/fs/cgroup/freezer ]; then
		# No task/affinity: tasks are not pinned, so jobs on a shared node compete for its
		# CPUs as on clusters that do not constrain cores (the attribution tests rely on it).
		proctrack=proctrack/cgroup; task=task/cgroup; gather=jobacct_gather/cgroup
	else
		proctrack=proctrack/linuxproc; task=task/none; gather=jobacct_gather/linux
	fi
	mkdir -p "$SLURM_DIR"/ctld "$LOG" /etc/slurm/plugstack.conf.d
	# What the controller, slurmdbd and the controller's epilog write, as SlurmUser.
	chown -R "$SLURM_USER:" "$SLURM_DIR/ctld"
	for f in slurmctld.log slurmdbd.log jobcomp.txt epilog-slurmctld.log; do
		touch "$LOG/$f"; chown "$SLURM_USER:" "$LOG/$f"
	done
	install -d -o "$SLURM_USER" "$SLURM_DIR/run"
	for node in $(node_names); do mkdir -p "$(slurmd_spool "$node")"; done
	cat > /etc/slurm/slurm.conf <<CONF
ClusterName=aipm
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$SLURM_USER
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$SLURM_DIR/ctld
SlurmctldPidFile=$SLURM_DIR/run/slurmctld.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=$proctrack
TaskPlugin=$task
JobAcctGatherType=$gather
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
EpilogSlurmctld=$EPILOG
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
ReturnToService=2
MpiDefault=none
KillWait=2
MinJobAge=600
GresTypes=gpu
CONF
	if [ "$NODES" -eq 1 ]; then
		cat >> /etc/slurm/slurm.conf <<CONF
SlurmdSpoolDir=$SLURM_DIR/d
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmdLogFile=$LOG/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
	else
		cat >> /etc/slurm/slurm.conf <<CONF
SlurmdSpoolDir=$SLURM_DIR/d-%n
SlurmdPidFile=$SLURM_DIR/slurmd-%n.pid
SlurmdLogFile=$LOG/slurmd-%n.log
NodeName=n[1-$NODES] NodeHostname=$host NodeAddr=127.0.0.1 Port=[6821-$(( 6820 + NODES ))] CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=n[1-$NODES] Default=YES MaxTime=INFINITE State=UP
CONF
	fi
	# Two simulated GPUs per node: device files for Slurm's gres (no driver behind them:
	# nothing opens them) and the stand-in NVML library that the plugin loads with nvml_lib=.
	: > /etc/slurm/gres.conf
	for node in $(node_names); do
		echo "NodeName=$node Name=gpu File=/dev/nvidia[0-1]" >> /etc/slurm/gres.conf
	done
	cat > /etc/slurm/cgroup.conf <<'CONF'
CgroupPlugin=autodetect
ConstrainCores=no
ConstrainRAMSpace=yes
ConstrainDevices=no
CONF
	echo 'include /etc/slurm/plugstack.conf.d/*.conf' > /etc/slurm/plugstack.conf
	# slurmdbd refuses a configuration file others can read (it holds the DB password); it
	# must be its SlurmUser's.
	install -m 0600 -o "$SLURM_USER" /dev/null /etc/slurm/slurmdbd.conf
	cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=$SLURM_USER
DebugLevel=info
LogFile=$LOG/slurmdbd.log
PidFile=$SLURM_DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=aipmtest
CONF
	# The controller's epilog stores each recorded job's energy in its AdminComment, as an
	# admin would set it up (contrib/aipm-epilog-slurmctld.sh), with this build's binary.
	# It runs as SlurmUser: the script and the binary are installed where slurm can run
	# them (a checkout under /root is closed to it).
	install -D -m 0755 "$CONTRIB/aipm-epilog-slurmctld.sh" /usr/local/lib/aipm/aipm-epilog-slurmctld.sh
	install -D -m 0755 "$ANALYZE" /usr/local/lib/aipm/aipm-analyze
	cat > "$EPILOG" <<SH
#!/bin/sh
AIPM_ANALYZE=/usr/local/lib/aipm/aipm-analyze AIPM_EPILOG_LOG=$LOG/epilog-slurmctld.log exec /usr/local/lib/aipm/aipm-epilog-slurmctld.sh
SH
	chmod 0755 "$EPILOG"
	log "nodes=$(node_names | tr '\n' ' ')cpus=$cpus mem=${mem}M $proctrack"
}

install_plugin() {
	[ -f "$PLUGIN" ] || { log "no plugin at $PLUGIN: run cargo build --workspace first"; exit 1; }
	# A new inode: slurmd keeps the old file mapped.
	install -D -m 0755 "$PLUGIN" "$PLUGIN_DEST"
	install -d -o root -g root -m 0755 "$SPOOL"
	# required: a broken plugin fails submissions loudly in tests.
	# One node: the spool is read where it is. Several: each node writes its own spool, as
	# on a local disk, and publishes each job's recording at its end to the shared store,
	# which the tests, the controller and users read (docs/storage.md).
	local where="spool=$SPOOL"
	if [ "$NODES" -gt 1 ]; then
		for node in $(node_names); do install -d -o root -g root -m 0755 "$SLURM_DIR/spool-$node"; done
		where="spool=$SLURM_DIR/spool-%n store=$SPOOL lockdir=/run/aipm/%n"
	fi
	echo "required $PLUGIN_DEST $where reader_group=$SLURM_USER powercap_root=$(sim_root %n) nvml_lib=$(nvml_dir %n)/libnvidia-ml.so min_period=100ms ${AIPM_PLUGIN_ARGS:-}" \
		> /etc/slurm/plugstack.conf.d/aipm.conf
	log "plugstack: $(cat /etc/slurm/plugstack.conf.d/aipm.conf)"
}

start_gpus() {
	local i k=0 node dir gpu0_w tag now
	for i in 0 1; do [ -e /dev/nvidia$i ] || mknod -m 0666 /dev/nvidia$i c 195 $i; done
	[ -f "$STANDIN" ] || { log "no stand-in NVML at $STANDIN: run cargo build --workspace first"; exit 1; }
	for node in $(node_names); do
		k=$(( k + 1 ))
		dir=$(nvml_dir "$node")
		# One node keeps the documented 300 W; node K of several draws (200+100K) W.
		gpu0_w=$GPU0_W tag=0
		[ "$NODES" -gt 1 ] && gpu0_w=$(( 200 + 100 * k )) tag=$k
		now=$(date +%s%3N)
		install -D -m 0755 "$STANDIN" "$dir/libnvidia-ml.so"
		cat > "$dir/libnvidia-ml.so.json.tmp" <<JSON
{ "driver_version": "550.54.15", "devices": [
  { "uuid": "GPU-5a1e0000-0000-0000-0000-00000000000$tag", "name": "Simulated GPU 0", "power_w": $gpu0_w,
    "energy_start_mj": 123456789, "start_unix_ms": $now, "util_gpu": 90, "util_mem": 30,
    "mem_total": 42949672960, "mem_used": 21474836480, "mem_reserved": 0 },
  { "uuid": "GPU-5a1e0001-0000-0000-0000-00000000000$tag", "name": "Simulated GPU 1", "power_w": 55,
    "energy_start_mj": 0, "start_unix_ms": $now, "util_gpu": 0, "util_mem": 0,
    "mem_total": 42949672960, "mem_used": 0, "mem_reserved": 0 } ] }
JSON
		mv "$dir/libnvidia-ml.so.json.tmp" "$dir/libnvidia-ml.so.json"
	done
}

start_simulator() {
	local k=0 node root watts pidfile
	for pidfile in "$SLURM_DIR"/sim*.pid; do stop_pidfile simulator "$pidfile"; done
	for node in $(node_names); do
		k=$(( k + 1 ))
		root=$(sim_root "$node")
		watts=$SIM_WATTS
		[ "$NODES" -gt 1 ] && watts="package-0=$(( 30 + 10 * k )) package-0/dram=6"
		local args=()
		for w in $watts; do args+=(--zone "$w"); done
		pidfile=$SLURM_DIR/sim.pid
		[ "$NODES" -gt 1 ] && pidfile=$SLURM_DIR/sim-$node.pid
		setsid "$ANALYZE" simulate rapl --root "$root" "${args[@]}" \
			</dev/null >>"$LOG/simulator.log" 2>&1 &
		echo $! > "$pidfile"
		wait_for 10 test -s "$root/intel-rapl:0/energy_uj" || { log "simulator did not start"; cat "$LOG/simulator.log"; exit 1; }
	done
}

start_munge() {
	if [ -f /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then return 0; fi
	if [ ! -s /etc/munge/munge.key ]; then
		mungekey --create --force 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
		chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
	fi
	install -d -o munge -g munge -m 755 /run/munge
	install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
	runuser -u munge -- /usr/sbin/munged
	wait_for 10 sh -c 'munge -n | unmunge' || { log "munge does not work"; exit 1; }
}

start_mariadb() {
	if [ -f "$DB_PID" ] && kill -0 "$(cat "$DB_PID")" 2>/dev/null; then return 0; fi
	install -d -o mysql -g mysql -m 0755 /run/mysqld
	if [ ! -d "$DB_DIR/mysql" ]; then
		install -d -o mysql -g mysql -m 0700 "$DB_DIR"
		mariadb-install-db --user=mysql --datadir="$DB_DIR" --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1
	fi
	# No TCP: slurmdbd reaches it through the socket ("localhost"). It runs as mysql: its pid
	# and log files live where mysql may write.
	setsid /usr/sbin/mariadbd --user=mysql --datadir="$DB_DIR" --socket="$DB_SOCKET" \
		--pid-file="$DB_PID" --skip-networking --log-error="$DB_DIR/error.log" \
		</dev/null >/dev/null 2>&1 &
	wait_for 30 mariadb --socket="$DB_SOCKET" -e 'select 1' || { log "mariadb not up"; tail "$DB_DIR/error.log"; exit 1; }
	mariadb --socket="$DB_SOCKET" -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
		CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'aipmtest';
		GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

start_slurmdbd() {
	slurmdbd
	wait_for 60 sacctmgr -n show cluster || { log "slurmdbd not up"; tail "$LOG/slurmdbd.log"; exit 1; }
	sacctmgr -n -P show cluster format=cluster | grep -qx aipm || sacctmgr -i add cluster aipm >/dev/null
}

# A start is a reboot of the test nodes: tasks and job cgroups left by step daemons killed
# in a test (a node crash, emulated) are removed, or they would count as jobs on the node.
remove_stale_job_cgroups() {
	cat /sys/fs/cgroup/freezer/slurm*/uid_*/job_*/*/tasks 2>/dev/null | sort -u | xargs -r kill -9 2>/dev/null || true
	sleep 0.2
	find /sys/fs/cgroup/*/slurm*/uid_*/job_* -depth -type d -exec rmdir {} + 2>/dev/null || true
}

do_start() {
	local t0=$SECONDS
	install_packages
	stop_daemons
	remove_stale_job_cgroups
	write_config
	install_plugin
	for u in $TEST_USERS; do
		id "$u" >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/bash "$u"
	done
	start_simulator
	start_gpus
	start_munge
	start_mariadb
	log "mariadb up at $(( SECONDS - t0 ))s"
	start_slurmdbd
	log "slurmdbd up at $(( SECONDS - t0 ))s"
	slurmctld
	wait_for 30 scontrol ping || { log "slurmctld not up"; tail "$LOG/slurmctld.log"; exit 1; }
	if [ "$NODES" -eq 1 ]; then
		slurmd
	else
		for node in $(node_names); do slurmd -N "$node"; done
	fi
	wait_for 30 sh -c "[ \$(sinfo -h -N -o %T | grep -c '^idle') -eq $NODES ]" || { log "nodes not idle"; sinfo -N; tail "$LOG"/slurmd*.log; exit 1; }
	log "cluster up in $(( SECONDS - t0 ))s"
}

stop_daemons() {
	local pidfile
	for pidfile in "$SLURM_DIR"/slurmd*.pid; do stop_pidfile slurmd "$pidfile"; done
	stop_pidfile slurmctld "$SLURM_DIR/run/slurmctld.pid"
	stop_pidfile slurmdbd "$SLURM_DIR/run/slurmdbd.pid"
	# Where an older version of this script kept them.
	stop_pidfile slurmctld "$SLURM_DIR/slurmctld.pid"
	stop_pidfile slurmdbd "$SLURM_DIR/slurmdbd.pid"
}

do_stop() {
	stop_daemons
	for pidfile in "$SLURM_DIR"/sim*.pid; do stop_pidfile simulator "$pidfile"; done
	stop_pidfile mariadb "$DB_PID"
	stop_pidfile munged /run/munge/munged.pid
	rm -f /etc/slurm/plugstack.conf.d/aipm.conf
}

case "${1:-}" in
	start)
		if [ "${2:-}" = --nodes ]; then NODES=${3:?"--nodes needs a number"}; fi
		case "$NODES" in ''|*[!0-9]*|0) echo "--nodes: expected a number of nodes, got '$NODES'" >&2; exit 2 ;; esac
		do_start ;;
	stop) do_stop ;;
	status)
		for f in "$SLURM_DIR"/*.pid "$SLURM_DIR"/run/*.pid /run/munge/munged.pid; do
			[ -f "$f" ] && echo "$f: $(cat "$f")"
		done
		sinfo 2>/dev/null || true ;;
	*) echo "usage: $0 start [--nodes N]|stop|status" >&2; exit 2 ;;
esac
