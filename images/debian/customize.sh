#!/bin/sh
# Runs on the build host after the packages are installed and files/ is copied in:
#   customize.sh ROOTFS RECIPE_DIR
# mmdebstrap has /proc, /sys and /dev mounted in ROOTFS while it runs; systemctl works offline in the chroot.
set -eu
rootfs=$1
recipe=$2

units() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$recipe/$1"; }

chroot "$rootfs" systemctl enable $(units enabled-units.txt)
chroot "$rootfs" systemctl disable $(units disabled-units.txt)
chroot "$rootfs" systemctl mask $(units masked-units.txt)
# The boot cuts (boot-cuts/disabled-units.txt says why they are apart); absent from the benchmark's baseline.
if [ -d "$recipe/boot-cuts" ]; then
    chroot "$rootfs" systemctl disable $(units boot-cuts/disabled-units.txt)
    chroot "$rootfs" systemctl mask $(units boot-cuts/masked-units.txt)
    # The update stamps systemd-update-done.service writes at the end of a boot (systemd.unit(5),
    # ConditionNeedsUpdate=): without them every node's first boot, which on a fresh overlay is every boot,
    # runs the units that redo at boot what dpkg's triggers already did here: systemd-sysusers, ldconfig,
    # systemd-hwdb-update, systemd-journal-catalog-update. Stamped with /usr's time, as that service does.
    touch -r "$rootfs/usr" "$rootfs/etc/.updated" "$rootfs/var/.updated"
fi

# Host keys come from the harness at boot (kthw-identity); keys made at build time would be shared by every
# node built from this image.
rm -f "$rootfs"/etc/ssh/ssh_host_*
# Empty, not "uninitialized": systemd makes a fresh machine id each boot without running first-boot units.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
mkdir -p "$rootfs/var/log/journal"

# containerd looks for CNI plugins in /opt/cni/bin, where Cilium installs its own; Debian's go there too.
mkdir -p "$rootfs/opt/cni/bin" "$rootfs/etc/cni/net.d"
for p in "$rootfs"/usr/lib/cni/*; do
    ln -sf "/usr/lib/cni/${p##*/}" "$rootfs/opt/cni/bin/${p##*/}"
done
