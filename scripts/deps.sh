#!/usr/bin/env bash
# Installs the Debian packages a make target needs, only those missing, so `make test`
# and `make demo` work on a fresh Debian 12 machine run as root.
#   usage: scripts/deps.sh test|demo|bench|ramdisk
set -euo pipefail
pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || pkgs+=("$2"); }
# ramdisk_needs: what initramfs.Build (make ramdisk, and the initramfs tests) copies from
# this machine with their libraries. Keep it in step with initramfs/hosttools.go, which
# names the same packages when a tool is missing.
ramdisk_needs() {
  need apt-get apt           # the kernel and busybox-static packages are downloaded, never installed
  need depmod kmod           # modules.dep of the ramdisk's module tree
  need mke2fs e2fsprogs      # mkfs.ext4, tune2fs, resize2fs, e2fsck too
  need mkfs.xfs xfsprogs     # xfs_admin, xfs_db, xfs_growfs too
  need mkfs.vfat dosfstools  # fsck.vfat too
  need mkswap util-linux     # blkid too
  need blkid util-linux
  need lvm lvm2
  need dmsetup dmsetup
  need mdadm mdadm
  need grub-install grub2-common
  need grub-mkimage grub-common   # grub-editenv, grub-probe, grub-mount, grub-mkrelpath too
  [ -d /usr/lib/grub/i386-pc ] || pkgs+=(grub-pc-bin)          # platform files only: never grub-pc,
  [ -d /usr/lib/grub/x86_64-efi ] || pkgs+=(grub-efi-amd64-bin) # whose postinst installs onto the host
  need os-prober os-prober   # linux-boot-prober too
  need mcopy mtools          # mmd, mdir too
  need efibootmgr efibootmgr
  need udevadm udev
  need xz xz-utils
  need rsync rsync           # copies images that an rsync daemon serves
  need sgdisk gdisk
  [ -f /etc/ssl/certs/ca-certificates.crt ] || pkgs+=(ca-certificates)   # trusted CAs for https URLs
}
case "${1:-}" in
  test)
    need sgdisk gdisk         # cross-checks planned tables against a real GPT tool
    need losetup mount        # loop-device tests (util-linux)
    need blkid util-linux     # reads back filesystem UUIDs and labels
    need mke2fs e2fsprogs     # filesystems the partition tests create
    need mkfs.xfs xfsprogs
    need mkfs.vfat dosfstools
    need mkswap util-linux
    need grub-editenv grub-common   # grubenv and grub.cfg are checked against grub's own tools
    [ -d /usr/lib/grub/i386-pc ] || pkgs+=(grub-pc-bin)          # platform files only: never grub-pc,
    [ -d /usr/lib/grub/x86_64-efi ] || pkgs+=(grub-efi-amd64-bin) # whose postinst installs onto the host
    need grub-install grub2-common
    need mcopy mtools          # fills the ESP without mounting vfat
    need fsck.vfat dosfstools
    need udevadm udev          # grub-install finds loop partitions' starts through udevadm
    need os-prober os-prober   # the deploy's kernel discovery is tested with both probers
    need rsync rsync           # rsync image sources are deployed from a daemon the tests start
    need etcd etcd-server      # the FleetLock server's tests start a real 3-member etcd cluster
    need qemu-system-x86_64 qemu-system-x86   # boots deployed disks (SeaBIOS and OVMF)
    [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || pkgs+=(ovmf)
    ;;
  demo)
    need sgdisk gdisk
    need losetup mount
    need mke2fs e2fsprogs
    need mkfs.vfat dosfstools
    need mkswap util-linux
    [ -d /usr/lib/grub/i386-pc ] || pkgs+=(grub-pc-bin)
    [ -d /usr/lib/grub/x86_64-efi ] || pkgs+=(grub-efi-amd64-bin)
    need grub-install grub2-common
    need grub-editenv grub-common
    need mcopy mtools
    need udevadm udev
    need apt-get apt           # the demo images' kernel and busybox come from Debian packages
    need qemu-system-x86_64 qemu-system-x86   # boots the deployed disk once
    ;;
  bench)
    need curl curl
    need zstd zstd
    need gzip gzip
    need xz xz-utils
    need bzip2 bzip2
    need tar tar
    need dd coreutils
    need e2fsck e2fsprogs
    need bmaptool bmap-tools   # the raw images' other alternative: bmaptool copy with a block map
    need mke2fs e2fsprogs
    need losetup mount
    # the reload benchmark first deploys a two-image disk, which installs grub (BIOS)
    need grub-install grub2-common
    need grub-editenv grub-common
    [ -d /usr/lib/grub/i386-pc ] || pkgs+=(grub-pc-bin)   # platform files only, never grub-pc
    need udevadm udev          # grub-install finds loop partitions' starts through udevadm
    ;;
  ramdisk)
    ramdisk_needs
    ;;
  *) echo "usage: $0 test|demo|bench|ramdisk" >&2; exit 2 ;;
esac
[ ${#pkgs[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${pkgs[*]} (run as root, or install them)" >&2
  exit 3
fi
echo "installing Debian packages: ${pkgs[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
