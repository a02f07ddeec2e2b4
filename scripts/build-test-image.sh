#!/usr/bin/env bash
# Build the tiny busybox image the tests, the lab and the demo run as "containers".
# Nothing can be pulled on these machines, so the image is imported from Debian's busybox-static.
set -euo pipefail
IMAGE=${1:-netdoctor-test/busybox:latest}
if docker image inspect "$IMAGE" >/dev/null 2>&1; then exit 0; fi
BUSYBOX=$(command -v busybox || echo /bin/busybox)
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,etc,tmp,www,proc,sys,dev}
cp "$BUSYBOX" "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/:/bin/sh' >"$rootfs/etc/passwd"
echo 'root:x:0:' >"$rootfs/etc/group"
echo 'hello from netdoctor test image' >"$rootfs/www/index.html"
tar -C "$rootfs" -c . | docker import -c 'CMD ["sh"]' -c 'ENV PATH=/bin' - "$IMAGE" >/dev/null
echo "built $IMAGE"
