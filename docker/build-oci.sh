#!/usr/bin/env bash
# Build the image without a Docker daemon (`make image`): buildah with vfs storage and chroot
# isolation, on a base root filesystem made from Debian's packages by debootstrap (no registry
# pull). Needs root (or a user namespace), buildah and debootstrap (apt-get install buildah
# debootstrap). The CPU variant only; the CUDA variant needs the nvidia/cuda base from a registry.
#   docker/build-oci.sh [TAG]        -> localhost/minivess:cpu (or TAG)
# Environment: SUITE (default bookworm: Python 3.11), MIRROR (default deb.debian.org/debian),
#              STORAGE (buildah storage root, default /var/tmp/minivess-oci), FIND_LINKS (a
#              folder of wheels mounted into the build, e.g. a local CPU torch wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-localhost/minivess:cpu}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
STORAGE=${STORAGE:-/var/tmp/minivess-oci}
base=localhost/minivess-base:$SUITE
b=(buildah --storage-driver vfs --root "$STORAGE/root" --runroot "$STORAGE/run")

if ! "${b[@]}" inspect --type image "$base" >/dev/null 2>&1; then
  rootfs="$STORAGE/rootfs-$SUITE"
  if [ ! -x "$rootfs/bin/bash" ]; then
    echo "oci: debootstrap $SUITE into $rootfs"
    mkdir -p "$STORAGE"
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR"
  fi
  echo "oci: importing the base root filesystem as $base"
  ctr=$("${b[@]}" from scratch)
  mnt=$("${b[@]}" mount "$ctr")
  cp -a "$rootfs/." "$mnt/"
  "${b[@]}" umount "$ctr" >/dev/null
  "${b[@]}" commit -q "$ctr" "$base" >/dev/null
  "${b[@]}" rm "$ctr" >/dev/null
fi
volumes=()
if [ -n "${FIND_LINKS:-}" ]; then
  volumes=(--volume "$FIND_LINKS:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels)
fi
[ -n "${TORCH_INDEX:-}" ] && volumes+=(--build-arg TORCH_INDEX="$TORCH_INDEX")
echo "oci: building $TAG"
"${b[@]}" bud --isolation chroot --layers=false --build-arg VARIANT=cpu \
  --build-arg CPU_BASE="$base" "${volumes[@]}" -t "$TAG" -f Dockerfile .
echo "oci: built $TAG; run it with: ${b[*]} from $TAG, or push it: ${b[*]} push $TAG docker://..."
