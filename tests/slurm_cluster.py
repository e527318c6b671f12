"""A single-node SLURM cluster on this machine, started by hand for the tests, as the README tells a user to on a
workstation.

Needs root and Debian's ``slurmctld slurmd slurm-client munge`` (``.ci/run`` installs them).  Everything the
cluster writes (its ``slurm.conf``, munge key and socket, state, spool and logs) lives in one folder, which every
user must be able to enter, up from ``/`` (munged refuses a socket elsewhere, so not pytest's private ``tmp_path``,
but a folder of ``tempfile.mkdtemp``); its daemons
run in the foreground as children of the test process on ports that are free, and are stopped by their process
ids.  Clients (``sbatch``, ``squeue``, ... and submitit, which calls them) find the cluster through
``SLURM_CONF``.  Nothing global is written: the node and the controller are addressed as 127.0.0.1, so the host
name need not resolve.

Three settings are for the tests' sake: ``cred_expire=10`` (a requeued job waits about that long before it may
start again; SLURM's default is 120 s), ``sched_interval=5,bf_interval=5`` (the scheduler looks at pending jobs every
5 s, not every 30-60 s) and ``KillWait=5`` (a cancelled job's processes are killed 5 s after SIGTERM; 30 s by
default).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SBIN = "/usr/sbin:/sbin"  # where Debian puts the daemons, not always on a user's PATH
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "srun")
INSTALL = "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"


def unavailable() -> str | None:
    """Why a cluster cannot be started here (not root, or SLURM not installed), or None."""
    if os.geteuid() != 0:
        return "SLURM's daemons run as root here, and the tests are not root"
    path = f"{os.environ.get('PATH', '')}:{SBIN}"
    missing = [name for name in DAEMONS + CLIENTS if shutil.which(name, path=path) is None]
    if missing:
        return f"SLURM is not installed (no {', '.join(missing)}): {INSTALL}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mib() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20


def slurm_conf(folder: Path, host: str, cpus: int, memory_mib: int, ports: tuple[int, int]) -> str:
    """A ``slurm.conf`` for one node (``host``, ``cpus``, ``memory_mib``) and one partition, without cgroups or
    accounting, keeping every file in ``folder``."""
    return f"""\
ClusterName=nftest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge.socket,cred_expire=10
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mib} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class Cluster:
    """A running cluster: its folder, its ``slurm.conf`` and its daemons."""

    folder: Path
    conf: Path
    daemons: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """This process's environment with ``SLURM_CONF`` pointing at the cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *command: str, check: bool = True) -> str:
        """A client command's output (``squeue -h ...``)."""
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
        return done.stdout

    def stop(self, timeout: float = 60.0) -> None:
        """Cancel every job and wait till none is left (a job step must not outlive its slurmd), then stop the
        daemons (slurmd, slurmctld, munged), each by its process id, and wait for them."""
        if self.daemons and all(daemon.poll() is None for daemon in self.daemons):
            self.run("scancel", "--me", check=False)
            deadline = time.monotonic() + timeout
            while self.run("squeue", "-h", check=False).strip() and time.monotonic() < deadline:
                time.sleep(0.5)
        for daemon in reversed(self.daemons):
            if daemon.poll() is None:
                daemon.terminate()
                try:
                    daemon.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()


def start_cluster(folder: Path, timeout: float = 60.0) -> Cluster:
    """Start munged, slurmctld and slurmd with their files in ``folder`` (module docstring); return once the node is
    idle.

    Raises RuntimeError naming the daemon that stopped or the node state it never left (their logs are in
    ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # munged wants its socket's folder open to every user
    for name in ("state", "spool"):
        (folder / name).mkdir(exist_ok=True)
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    memory = int(0.85 * _memory_mib())
    cluster = Cluster(folder, folder / "slurm.conf")
    cluster.conf.write_text(slurm_conf(folder, host, os.cpu_count() or 1, memory, (_free_port(), _free_port())))
    sbin = {**cluster.env, "PATH": f"{os.environ.get('PATH', '')}:{SBIN}"}
    munge = [f"--key-file={key}", f"--socket={folder}/munge.socket", f"--pid-file={folder}/munged.pid"]
    commands = {
        "munged": ["munged", "-F", *munge, f"--seed-file={folder}/munged.seed", f"--log-file={folder}/munged.log"],
        "slurmctld": ["slurmctld", "-D", "-f", str(cluster.conf)],
        "slurmd": ["slurmd", "-D", "-f", str(cluster.conf), "-N", host],
    }
    try:
        for name, command in commands.items():
            with open(folder / f"{name}.out", "w") as log:
                cluster.daemons.append(subprocess.Popen(command, env=sbin, stdout=log, stderr=subprocess.STDOUT))
            if name == "munged":
                _wait_for(lambda: (folder / "munge.socket").exists(), cluster, timeout, "munged's socket")
        _wait_for(lambda: _node_state(cluster) == "idle", cluster, timeout, "an idle node")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _node_state(cluster: Cluster) -> str:
    return cluster.run("sinfo", "-h", "-o", "%T", check=False).strip()


def _wait_for(ready, cluster: Cluster, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for name, daemon in zip(DAEMONS, cluster.daemons):
            if daemon.poll() is not None:
                raise RuntimeError(f"{name} stopped (exit {daemon.returncode}); see {cluster.folder}/{name}.out")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} after {timeout:.0f} s; see the logs in {cluster.folder}")
        time.sleep(0.1)
