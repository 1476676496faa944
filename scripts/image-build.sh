#!/usr/bin/env bash
# Builds the production image from the unmodified Dockerfile on a machine with no registry and no
# container runtime that can run containers (tests/test_image.py then runs it without one):
#
#   1. The base image is a local stand-in, imported under the Dockerfile's exact FROM name: a Debian
#      bookworm root filesystem (mmdebstrap --variant=minbase, from the machine's own apt sources) with
#      the distribution's python3, python3-venv, python-is-python3, ca-certificates and netbase. The
#      tarball is cached; an image of that name already present is used as it is.
#   2. The locked wheels are downloaded on the host (pip download --require-hashes -r requirements.lock)
#      into a cache; the build runs without a network (unshare --net) with a pip.conf (no-index,
#      find-links) mounted into its RUN steps, so pip installs exactly those files, checking the hashes.
#   3. buildah bud --isolation chroot (RUN steps in a chroot: podman run / crun cannot run here).
#
# Usage: scripts/image-build.sh [IMAGE]      (default localhost/okta-ldap-hook:smoke)
# Cache: $OKTA_LDAP_HOOK_IMAGE_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/okta-ldap-hook-image.
# Needs root, buildah, podman, mmdebstrap (scripts/install-system-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${1:-localhost/okta-ldap-hook:smoke}
cache=${OKTA_LDAP_HOOK_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/okta-ldap-hook-image}
python=${PYTHON:-python3}
mkdir -p "$cache"
step() { printf '[image-build %(%T)T] %s\n' -1 "$*" >&2; }

# The one base image of the Dockerfile (every stage uses the same FROM).
base=$(awk 'toupper($1) == "FROM" && $2 !~ /^(build|runtime-base|runtime|dev)$/ { print $2 }' Dockerfile | sort -u)
[ "$(wc -l <<<"$base")" -eq 1 ] || { echo "expected one base image in the Dockerfile, found: $base" >&2; exit 1; }

# ------------------------------------------------------------------------------ 1. stand-in base image
if podman image exists "$base"; then
  step "base image $base present"
else
  rootfs=$cache/bookworm-python3-minbase.tar
  if [ ! -s "$rootfs" ]; then
    step "building the stand-in root filesystem with mmdebstrap (cached in $rootfs)"
    # --format=tar: always a tarball, never a directory target (in which mmdebstrap mounts /proc,
    # /sys and /dev while it works); written under a temporary name, so an interrupted run leaves no
    # tarball that looks complete.
    rm -f "$rootfs.partial"
    mmdebstrap --quiet --format=tar --variant=minbase \
      --include=python3,python3-venv,python-is-python3,ca-certificates,netbase \
      bookworm "$rootfs.partial"
    mv "$rootfs.partial" "$rootfs"
  fi
  step "importing $rootfs as $base"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    "$rootfs" "$base" >/dev/null
fi

# ------------------------------------------------------------------------------ 2. the locked wheels
wheels=$cache/wheels
step "downloading the locked wheels into $wheels"
"$python" -m pip download --quiet --disable-pip-version-check --require-hashes --no-deps \
  --only-binary=:all: --python-version 3.11 \
  -r requirements.lock -d "$wheels" 2> >(grep -v "^WARNING: Location .* is ignored" >&2)
pipconf=$cache/pip.conf
printf '[global]\nno-index = true\nfind-links = /wheels\n' >"$pipconf"

# ------------------------------------------------------------------------------ 3. offline build
step "building $image offline (buildah bud --isolation chroot, unshare --net)"
unshare --net buildah bud --quiet --isolation chroot --pull=never --layers \
  --volume "$wheels:/wheels:ro" --volume "$pipconf:/etc/pip.conf:ro" \
  --tag "$image" --file Dockerfile . >/dev/null
step "built $image"
