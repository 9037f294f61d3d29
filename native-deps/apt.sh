#!/usr/bin/env bash
# Debian packages strata needs, installed only when missing (idempotent, quiet when all present).
#   libfuse2, libfuse-dev, pkg-config  the FUSE library fuse-native links and is rebuilt against
#   libfuse3-dev, fuse3                libfuse 3, for the low-level session strata adds to fuse-native
#   fuse-overlayfs                     peer for tests (format round trips) and benchmarks
#   attr, acl                          getfattr/setfattr, getfacl/setfacl for tests
#   fio                                benchmarks
#   openssl                            certificates for the https tests (ADD from an https URL)
#   busybox-static                     a tiny real rootfs for the demo and tests
#   util-linux (setpriv)               run test commands as another user
#   runc                               the OCI runtime Docker uses: RUN steps of strata build
#   docker-registry (Distribution 2.8) a registry for the push and pull tests (started by them)
#   apache2-utils (htpasswd)           its password file, for the tests with authentication
#   docker.io (20.10)                  the oracle for strata build in tests (started privately by
#                                      them; the package's own service is never started)
set -euo pipefail
PKGS=(libfuse2 libfuse-dev libfuse3-dev fuse3 pkg-config fuse-overlayfs attr acl libcap2-bin fio openssl bc busybox-static util-linux psmisc bzip2 xz-utils zstd skopeo umoci runc docker.io docker-registry apache2-utils)
missing=()
for p in "${PKGS[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "native-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "native-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Packages with services (docker.io) must not start them: tests run their own daemons. Debian's
# policy-rc.d hook refuses service starts while it exists; one already there is left as it is.
policy=/usr/sbin/policy-rc.d
made_policy=false
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=true
fi
trap 'if $made_policy; then rm -f "$policy"; fi' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
