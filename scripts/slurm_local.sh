#!/usr/bin/env bash
# Start a one-node SLURM on this machine from Debian's slurm-wlm and munge (needs root).
# This host is the only node (CPUs = nproc) in one partition, "local". Idempotent: a running cluster is left as is.
#   scripts/slurm_local.sh          install if needed, configure, start, wait until the node is idle
#   scripts/slurm_local.sh stop     stop slurmd, slurmctld and munged
set -euo pipefail

CONF_DIR=/etc/slurm
SPOOL=/var/spool/slurm-local
LOG_DIR=/var/log/slurm-local

if [[ "${1:-start}" == "stop" ]]; then
  pkill -x slurmd || true
  pkill -x slurmctld || true
  pkill -x munged || true
  exit 0
fi

if [[ $EUID -ne 0 ]]; then
  echo "slurm_local.sh: must run as root (it starts munged, slurmctld and slurmd)" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge: a key, /run/munge owned by munge, the daemon running as munge.
if [[ ! -s /etc/munge/munge.key ]]; then
  if command -v mungekey >/dev/null; then mungekey --create --force; else
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; fi
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge /var/lib/munge /var/log/munge
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
install -d -m 0755 "$CONF_DIR" "$SPOOL/ctld" "$SPOOL/d" "$LOG_DIR"
cat > "$CONF_DIR/slurm.conf" <<CONF
# Written by trendgen's scripts/slurm_local.sh: a one-node cluster for tests.
ClusterName=trendgen-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
KillWait=10
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=300
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
# Debian's slurm packages expect a cgroup.conf only with cgroup plugins; none are used here.

if ! pgrep -x slurmctld >/dev/null; then slurmctld; fi
if ! pgrep -x slurmd >/dev/null; then slurmd; fi

for _ in $(seq 60); do
  state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)
  case "$state" in
    idle*|mixed*|allocated*) echo "slurm_local.sh: node $host is $state ($cpus CPUs, partition local)"; exit 0 ;;
    down*|drain*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
echo "slurm_local.sh: the node did not become idle; see $LOG_DIR" >&2
sinfo -N -l >&2 || true
exit 1
