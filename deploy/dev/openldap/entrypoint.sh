#!/bin/sh
# Entrypoint of the dev-profile OpenLDAP: writes slapd.conf from the template, loads the demo LDIF
# offline (slapadd) into an empty database, then runs slapd in the foreground as PID 1.
# Every start begins from the LDIF, so the dev directory is always the demo one.
# The DEV_LDAP_* variables exist for tests/test_container.py, which runs this script outside a container.
set -eu

conf_dir=${DEV_LDAP_CONF_DIR:-/etc/okta-ldap-hook-dev}
state_dir=${DEV_LDAP_STATE_DIR:-/var/lib/okta-ldap-hook-dev}
ldif=${DEV_LDAP_LDIF:-$conf_dir/demo.ldif}
port=${DEV_LDAP_PORT:-1389}
schema_dir=${DEV_LDAP_SCHEMA_DIR:-/etc/ldap/schema}
module_dir=${DEV_LDAP_MODULE_DIR:-/usr/lib/ldap}
bind_address=${DEV_LDAP_BIND_ADDRESS:-0.0.0.0}

rm -rf "$state_dir/data" "$state_dir/run"
mkdir -p "$state_dir/data" "$state_dir/run"
sed -e "s|@STATE_DIR@|$state_dir|g" \
    -e "s|@SCHEMA_DIR@|$schema_dir|g" \
    -e "s|@MODULE_DIR@|$module_dir|g" \
    "$conf_dir/slapd.conf" > "$state_dir/slapd.conf"

slapadd -q -f "$state_dir/slapd.conf" -b "dc=example,dc=com" -l "$ldif"
echo "dev-ldap: loaded $(grep -c '^dn:' "$ldif") entries from $ldif; listening on ldap://$bind_address:$port/" >&2

# -d 32768: foreground with the "none" log level (startup errors only).
exec slapd -d 32768 -f "$state_dir/slapd.conf" -h "ldap://$bind_address:$port/"
