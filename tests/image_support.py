"""Build the production image (scripts/image-build.sh) and run it without a container runtime.

``podman run`` cannot start containers on these machines (crun's setrlimit is refused), so the image
is run the way a runtime would, with the pieces that work here: its root filesystem mounted by
``buildah mount``; a new mount and PID namespace (``unshare --mount --pid --fork``) in which that root
is bind-mounted, given /proc, /dev and a tmpfs /tmp, the config directory bound at
/etc/okta-ldap-hook, and then remounted read-only; and ``chroot --userspec`` with the image's own
USER, ENV, WORKDIR, ENTRYPOINT and CMD read from ``podman image inspect``. The service is PID 1 of its
PID namespace, as in a pod, so SIGTERM reaches it as kubelet would send it.

What this does not prove: the real base image (python:3.11-slim-bookworm keeps Python under
/usr/local; the stand-in uses Debian's /usr/bin/python3), and there is no cgroup, network or user
namespace isolation (the service listens on the host's loopback).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "scripts" / "image-build.sh"
IMAGE = "localhost/okta-ldap-hook:smoke"
REQUIRED_TOOLS = ("buildah", "podman", "mmdebstrap", "unshare", "chroot")


def build(image: str = IMAGE) -> None:
    """Build ``image`` from the repository's Dockerfile (offline, from the cached base and wheels)."""
    subprocess.run([str(BUILD_SCRIPT), image], check=True, cwd=REPO, timeout=900)


def image_config(image: str = IMAGE) -> dict[str, Any]:
    """The OCI config of ``image``: User, Env, WorkingDir, Entrypoint, Cmd."""
    output = subprocess.run(
        ["podman", "image", "inspect", image], check=True, capture_output=True, text=True
    ).stdout
    config: dict[str, Any] = json.loads(output)[0]["Config"]
    return config


@dataclass
class MountedImage:
    """A buildah working container of the image, its root filesystem mounted on the host."""

    container: str
    root: Path

    @classmethod
    def of(cls, image: str = IMAGE) -> MountedImage:
        container = _run("buildah", "from", "--pull=never", image)
        root = Path(_run("buildah", "mount", container))
        return cls(container, root)

    def remove(self) -> None:
        subprocess.run(["buildah", "umount", self.container], check=False, capture_output=True)
        subprocess.run(["buildah", "rm", self.container], check=False, capture_output=True)


def _run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


#: Runs as PID 1 of the new PID namespace, in the new mount namespace (private propagation, so none of
#: these mounts leaks to the host), then execs the image's entrypoint: it stays PID 1.
_STARTER = r"""
set -eu
root=$1 config_dir=$2 user=$3 workdir=$4; shift 4
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
mkdir -p "$root/etc/okta-ldap-hook"
mount --bind -o ro "$config_dir" "$root/etc/okta-ldap-hook"
mount -o remount,bind,ro "$root"
exec chroot --userspec="$user" "$root" /bin/sh -c 'cd "$1" && shift && exec "$@"' workdir "$workdir" "$@"
"""


class ImageProcess:
    """The image's entrypoint running in its mounted root, as a container runtime would start it."""

    def __init__(self, mounted: MountedImage, config: dict[str, Any], config_dir: Path, env: dict[str, str],
                 log: Path) -> None:
        user = config.get("User") or "0:0"
        workdir = config.get("WorkingDir") or "/"
        command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
        environment = dict(item.split("=", 1) for item in config.get("Env") or [])
        environment.update(env)
        self._log = log.open("wb")
        self.unshare = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
             "sh", "-c", _STARTER, "starter", str(mounted.root), str(config_dir), user, workdir, *command],
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.command = shlex.join(command)

    @property
    def pid(self) -> int:
        """The host PID of the service (PID 1 of its namespace): unshare's one child."""
        for _ in range(200):
            children = Path(f"/proc/{self.unshare.pid}/task/{self.unshare.pid}/children").read_text().split()
            if children:
                return int(children[0])
            time.sleep(0.05)
        raise AssertionError("unshare started no child")

    def status(self) -> dict[str, str]:
        """/proc/PID/status of the service, as key -> value."""
        lines = Path(f"/proc/{self.pid}/status").read_text().splitlines()
        return dict(line.split(":\t", 1) for line in lines if ":\t" in line)

    def root_mount_options(self) -> list[str]:
        """The mount options of ``/`` as the service sees it (its chroot)."""
        roots = [line.split() for line in Path(f"/proc/{self.pid}/mountinfo").read_text().splitlines()]
        roots = [fields for fields in roots if fields[4] == "/"]
        assert roots, "no root mount in the service's mountinfo"
        return roots[-1][5].split(",")  # the last one mounted on / is the one on top

    def terminate(self, timeout: float) -> int:
        """SIGTERM to the service (as kubelet sends it to PID 1); its exit status."""
        os.kill(self.pid, signal.SIGTERM)
        return self.unshare.wait(timeout=timeout)

    def kill(self) -> None:
        """Stop whatever is left (--kill-child: unshare's death takes the service with it)."""
        if self.unshare.poll() is None:
            self.unshare.kill()
            self.unshare.wait(timeout=10)
        self._log.close()
