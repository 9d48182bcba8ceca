package disk

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The BLKPG ioctl ABI, from include/uapi/linux/blkpg.h (golang.org/x/sys/unix has no BLKPG):
//
//	#define BLKPG _IO(0x12,105)
//	struct blkpg_ioctl_arg { int op; int flags; int datalen; void __user *data; };
//	#define BLKPG_ADD_PARTITION    1
//	#define BLKPG_DEL_PARTITION    2
//	#define BLKPG_RESIZE_PARTITION 3
//	struct blkpg_partition {
//		long long start;   /* starting offset in bytes */
//		long long length;  /* length in bytes */
//		int pno;           /* partition number */
//		char devname[BLKPG_DEVNAMELTH]; /* unused, 64 */
//		char volname[BLKPG_VOLNAMELTH]; /* unused, 64 */
//	};
//
// Go lays these structs out as C does on every Linux architecture (int64 aligned as the C ABI
// aligns long long, a pointer-sized data field), so they can be passed as they are.
// The kernel requires start and length to be multiples of the logical block size and, for
// BLKPG_RESIZE_PARTITION, start to equal the partition's current start.
const (
	ioctlBLKPG           = 0x1269 // _IO(0x12, 105)
	blkpgAddPartition    = 1
	blkpgDelPartition    = 2
	blkpgResizePartition = 3
)

type blkpgIoctlArg struct {
	Op      int32
	Flags   int32
	Datalen int32
	Data    unsafe.Pointer // *blkpgPartition
}

type blkpgPartition struct {
	Start   int64
	Length  int64
	Pno     int32
	Devname [64]byte
	Volname [64]byte
}

// blkpg issues one BLKPG operation on the whole-disk descriptor fd; start and length are in
// bytes (ignored by the kernel for a delete).
func blkpg(fd int, op int32, pno int, start, length uint64) error {
	p := &blkpgPartition{Start: int64(start), Length: int64(length), Pno: int32(pno)}
	arg := &blkpgIoctlArg{Op: op, Datalen: int32(unsafe.Sizeof(*p)), Data: unsafe.Pointer(p)}
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), ioctlBLKPG, uintptr(unsafe.Pointer(arg)))
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		default:
			return errno
		}
	}
}
