"""A throw-away one-node SLURM cluster on this machine, for the slurm launcher's tests.

Debian's slurmctld / slurmd / munge packages, started by hand (there is no systemd and apt starts no
services). Everything lives in one private folder: config, state, logs, pid files and the munge socket, on
free ports, so /etc is left alone and a cluster already running on the machine is not disturbed. Clients
find the cluster through SLURM_CONF (see `env`).

    cluster = SlurmCluster.start()
    try:
        subprocess.run(["sbatch", ...], env=cluster.env())
    finally:
        cluster.stop()
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "sacct", "scancel")


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here (None when it can): the daemons need root and the Debian packages."""
    if os.geteuid() != 0:
        return "a local SLURM cluster needs root (munged runs as user munge, slurmd as root)"
    missing = [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if missing:
        return (f"SLURM/munge binaries missing ({', '.join(missing)}): "
                "apt-get install slurmctld slurmd slurm-client munge")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user (the munge package creates it)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@dataclass
class SlurmCluster:
    root: Path
    node: str
    cpus: int

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self) -> dict[str, str]:
        """The environment for client commands (sbatch, squeue, ...): the private config."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    @classmethod
    def start(cls, cpus: int | None = None, timeout: float = 60.0) -> "SlurmCluster":
        # under /tmp, not pytest's 0700 folders: munged (user munge) must reach its socket folder
        root = Path(tempfile.mkdtemp(prefix="fsdtag-slurm-", dir="/tmp"))
        root.chmod(0o755)
        # slurmd looks its own node line up by host name; no DNS here, so every address is 127.0.0.1
        cluster = cls(root, socket.gethostname().split(".")[0], cpus or os.cpu_count() or 1)
        try:
            cluster._start_munge()
            cluster._write_conf()
            env = cluster.env()
            subprocess.run([binary("slurmctld"), "-f", str(cluster.conf)], env=env, check=True, timeout=30)
            subprocess.run([binary("slurmd"), "-f", str(cluster.conf)], env=env, check=True, timeout=30)
            cluster._wait_idle(timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _start_munge(self) -> None:
        munge = pwd.getpwnam("munge")
        mdir = self.root / "munge"
        mdir.mkdir(mode=0o700)
        # the socket's folder must be searchable by everyone (slurm's clients); the key's must not
        self.munge_socket.parent.mkdir(mode=0o755)
        key = mdir / "munge.key"
        subprocess.run([binary("mungekey"), "--create", "--keyfile", str(key)], check=True, timeout=30)
        for path in (mdir, key, self.munge_socket.parent):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        key.chmod(0o400)
        # munged refuses to run as root; it runs as munge with everything in its own folder
        subprocess.run(["runuser", "-u", "munge", "--", binary("munged"), "--key-file", str(key),
                        "--socket", str(self.munge_socket), "--pid-file", str(mdir / "munged.pid"),
                        "--log-file", str(mdir / "munged.log"), "--seed-file", str(mdir / "munged.seed")],
                       check=True, timeout=30)

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge-socket" / "munge.socket"

    def _write_conf(self) -> None:
        r = self.root
        for d in ("state", "spool", "log"):
            (r / d).mkdir()
        self.conf.write_text(f"""\
# a one-node test cluster (tests/slurm_cluster.py); every setting below was needed in a container
ClusterName=fsdtag-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r / "state"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "slurmctld.pid"}
SlurmdPidFile={r / "slurmd.pid"}
SlurmctldLogFile={r / "log" / "slurmctld.log"}
SlurmdLogFile={r / "log" / "slurmd.log"}
# no cgroups in a container
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# CPUs are the consumable: one fold task per CPU, so the folds of a step run side by side
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# no slurmdbd: finished jobs go to a text file that `sacct -c` reads
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={r / "log" / "jobcomp.txt"}
# a job whose dependency can never be met (afterok on a failed job) is cancelled, not left pending forever
DependencyParameters=kill_invalid_depend
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=300
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            result = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env(), capture_output=True, text=True,
                                    timeout=30)
            state = result.stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        logs = "\n".join(p.read_text()[-2000:] for p in sorted((self.root / "log").glob("*.log")))
        raise RuntimeError(f"SLURM node not idle after {timeout:.0f} s (state {state!r}); logs:\n{logs}")

    def stop(self) -> None:
        """Shut the daemons down (each step tolerates a half-started cluster), then remove the folder."""
        if self.conf.exists():
            subprocess.run(["scontrol", "shutdown"], env=self.env(), capture_output=True, timeout=30)
        # scontrol shutdown stops slurmctld and slurmd; end whatever is left, and munged, by pid file
        for pid_file in (self.root / "slurmctld.pid", self.root / "slurmd.pid", self.root / "munge" / "munged.pid"):
            stop_pid_file(pid_file)
        shutil.rmtree(self.root, ignore_errors=True)


def stop_pid_file(pid_file: Path, timeout: float = 10.0) -> None:
    """SIGTERM the process a pid file names, waiting for it to go; SIGKILL if it will not."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout
    sig = signal.SIGTERM
    while True:
        try:
            os.kill(pid, sig if sig else 0)
        except ProcessLookupError:
            return
        sig = 0  # after the first signal, only check that it is gone
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.1)
