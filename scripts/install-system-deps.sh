#!/usr/bin/env bash
# Installs the Debian packages the demo and the tests run for real: OpenLDAP's slapd (the demo
# directory and every test fixture), Prometheus with promtool (metrics and alert-rule tests), wrk
# and valgrind (the benchmarks), buildah, podman and mmdebstrap (tests/test_image.py builds the
# image from the Dockerfile on a locally made base and runs it), and a Samba AD domain controller (the
# Active Directory tests and `make run DIRECTORY=ad`; samba-ad-provision is only "recommended" by
# samba-ad-dc, and provisioning fails without its schema files). Does nothing when they are all present.
set -euo pipefail

missing=()
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || missing+=(slapd ldap-utils)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
{ [ -x /usr/sbin/samba ] && command -v samba-tool >/dev/null 2>&1 && command -v ldbmodify >/dev/null 2>&1 \
  && [ -d /usr/share/samba/setup ]; } \
  || missing+=(samba samba-ad-dc samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind krb5-user ldb-tools)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them as root: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]}" >&2
apt-get update -q
# slapd asks debconf questions and starts nothing when installed non-interactively; the demo and the
# tests run their own slapd processes with generated configurations. Samba's packages start no DC either
# (no systemd here; the tests provision their own domain in a folder of their own, never /etc/samba).
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
