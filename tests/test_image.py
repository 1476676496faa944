"""The production image, built from the unmodified Dockerfile and run: it starts as UID 10001 on a
read-only root, answers /livez, /readyz and a real hook against a throwaway slapd, and exits cleanly
on SIGTERM.

The build is offline from a local stand-in base image and the locked wheels (scripts/image-build.sh);
the run uses no container runtime (tests/image_support.py says how, and what that does not prove).
Needs root and buildah, podman, mmdebstrap (scripts/install-system-deps.sh installs them); the first
run builds the base root filesystem (about 2 min), later runs reuse it from the cache.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from image_support import IMAGE, REQUIRED_TOOLS, ImageProcess, MountedImage, build, image_config
from support.config import SECRET, service_config

from service.demo.slapd import SERVICE_BIND_PASSWORD, Slapd, demo_ldif, free_port

REGISTRATION_EVENT = Path(__file__).resolve().parents[1] / "service/demo/data/registration-event.json"


@pytest.fixture(scope="module")
def image() -> str:
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    assert not missing, f"missing {missing}: run scripts/install-system-deps.sh as root"
    assert os.geteuid() == 0, "building and mounting images needs root"
    build(IMAGE)
    return IMAGE


@pytest.fixture
def mounted(image: str) -> Iterator[MountedImage]:
    mounted = MountedImage.of(image)
    yield mounted
    mounted.remove()


def _wait_ready(url: str, process: ImageProcess, log: Path) -> None:
    deadline = time.monotonic() + 60  # a loaded 2-core machine: generous, only a ceiling
    while time.monotonic() < deadline:
        assert process.unshare.poll() is None, f"the image's service exited:\n{log.read_text()}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the image's service did not become ready:\n{log.read_text()}")


def test_the_image_runs_as_in_a_pod_and_answers_a_hook(mounted: MountedImage, tmp_path: Path) -> None:
    config = image_config(IMAGE)
    assert config["User"] == "10001:10001"

    with Slapd(tmp_path / "ldap", demo_ldif()) as slapd:
        hook_port, ops_port = free_port(), free_port()
        document = service_config(slapd.url)
        document["server"] = {"host": "127.0.0.1", "hook_port": hook_port, "ops_port": ops_port}
        config_dir = tmp_path / "config"
        config_dir.mkdir()
        (config_dir / "config.yaml").write_text(yaml.safe_dump(document))
        os.chmod(config_dir, 0o755)  # readable by the image's user, as a mounted ConfigMap is

        log = tmp_path / "image-service.log"
        env = {"OKTA_HOOK_SECRET": SECRET, "LDAP_BIND_PASSWORD": SERVICE_BIND_PASSWORD}
        process = ImageProcess(mounted, config, config_dir, env, log)
        try:
            _wait_ready(f"http://127.0.0.1:{ops_port}/livez", process, log)
            assert httpx.get(f"http://127.0.0.1:{ops_port}/readyz", timeout=5).status_code == 200

            status = process.status()
            assert status["Uid"].split()[:2] == ["10001", "10001"], status["Uid"]
            assert status["Gid"].split()[:2] == ["10001", "10001"], status["Gid"]
            assert status["NSpid"].split()[-1] == "1", "the service is PID 1 of its namespace, as in a pod"
            assert "ro" in process.root_mount_options()

            answer = httpx.post(
                f"http://127.0.0.1:{hook_port}/hooks/registration",
                content=REGISTRATION_EVENT.read_bytes(),
                headers={"Authorization": SECRET, "Content-Type": "application/json"},
                timeout=10,
            )
            assert answer.status_code == 200, log.read_text()
            body = answer.json()
            assert body["debugContext"]["outcome"] == "enriched", body
            assert body["commands"][0]["value"]["department"] == "Engineering"

            assert process.terminate(timeout=30) == 0, log.read_text()
        finally:
            process.kill()

    output = log.read_text()
    assert "Traceback" not in output, output
    assert "Read-only file system" not in output, output
