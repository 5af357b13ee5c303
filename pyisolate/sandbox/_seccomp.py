"""The seccomp filter every full or degraded sandbox loads (bwrap ``--seccomp FD``).

Why: namespaces and a dropped uid already stop most escapes, but a handful of
syscalls are the usual first step of a kernel exploit or a sandbox break-out
(nested user namespaces give an unprivileged process a fresh set of
capabilities; ``ptrace`` reads other processes; keyrings and ``bpf`` are large,
often-buggy kernel surfaces; ``mount`` and friends rewrite the view bwrap set
up). The filter refuses them with ``EPERM`` so callers see an ordinary error.

It is a classic BPF program written here with :mod:`struct` (no libseccomp
dependency). It checks the ``arch`` field first: only x86_64 and aarch64 native
calls are judged by number; any other ABI (i386 ``int 0x80`` on x86_64, the x32
ABI) is refused outright, because the same number means another syscall there
and could slip past a number-only check.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "AUDIT_ARCH_AARCH64",
    "AUDIT_ARCH_X86_64",
    "BLOCKED_SYSCALLS",
    "CLONE_NEWUSER",
    "SECCOMP_RET_ALLOW",
    "SECCOMP_RET_ERRNO",
    "SYSCALL_NUMBERS",
    "build_filter",
]

# Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K

SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
_X32_SYSCALL_BIT = 0x40000000

CLONE_NEWUSER = 0x10000000

# struct seccomp_data: int nr; __u32 arch; __u64 ip; __u64 args[6]. Both
# supported arches are little-endian, so the low 32 bits of args[0] sit at 16.
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG0_LO = 16

# Syscall numbers from asm/unistd_64.h (x86_64) and asm-generic/unistd.h (aarch64).
SYSCALL_NUMBERS: Mapping[str, Mapping[str, int]] = {
    "x86_64": {
        "clone": 56, "clone3": 435, "unshare": 272, "setns": 308,
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
        "mount": 165, "umount2": 166, "pivot_root": 155,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "fspick": 433, "mount_setattr": 442,
        "init_module": 175, "finit_module": 313, "delete_module": 176,
        "kexec_load": 246, "kexec_file_load": 320, "open_by_handle_at": 304,
        "add_key": 248, "request_key": 249, "keyctl": 250, "bpf": 321,
    },
    "aarch64": {
        "clone": 220, "clone3": 435, "unshare": 97, "setns": 268,
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
        "mount": 40, "umount2": 39, "pivot_root": 41,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "fspick": 433, "mount_setattr": 442,
        "init_module": 105, "finit_module": 273, "delete_module": 106,
        "kexec_load": 104, "kexec_file_load": 294, "open_by_handle_at": 265,
        "add_key": 217, "request_key": 218, "keyctl": 219, "bpf": 280,
    },
}  # fmt: skip

# Refused whatever their arguments. clone/unshare are refused only with
# CLONE_NEWUSER (threads and fork need clone); clone3 passes its flags in
# memory BPF cannot read, so it gets ENOSYS and libc falls back to clone.
BLOCKED_SYSCALLS: Sequence[str] = (
    "setns", "ptrace", "process_vm_readv", "process_vm_writev",
    "mount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "open_by_handle_at", "add_key", "request_key", "keyctl", "bpf",
)  # fmt: skip

_ARCHES = (("x86_64", AUDIT_ARCH_X86_64), ("aarch64", AUDIT_ARCH_AARCH64))


class _Asm:
    """A tiny assembler: instructions with symbolic jump targets, resolved at the end.

    Classic BPF jumps are forward-only 8-bit offsets; resolving labels here keeps
    the program readable and makes a wrong offset an error instead of a hole.
    """

    def __init__(self) -> None:
        self._code: list[tuple[int, str | int, str | int, int]] = []
        self._labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self._labels[name] = len(self._code)

    def op(self, code: int, k: int, jt: str | int = 0, jf: str | int = 0) -> None:
        self._code.append((code, jt, jf, k))

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, (code, jt, jf, k) in enumerate(self._code):
            out += struct.pack("=HBBI", code, self._rel(pc, jt), self._rel(pc, jf), k)
        return bytes(out)

    def _rel(self, pc: int, target: str | int) -> int:
        if isinstance(target, int):
            return target
        offset = self._labels[target] - pc - 1
        if not 0 <= offset <= 255:
            raise ValueError(f"BPF jump to {target} out of range ({offset})")
        return offset


def build_filter() -> bytes:
    """Return the filter as the raw ``struct sock_filter`` array bwrap reads from its fd."""
    eperm = SECCOMP_RET_ERRNO | errno.EPERM
    asm = _Asm()
    asm.op(_LD_W_ABS, _OFF_ARCH)
    for name, audit_arch in _ARCHES:
        asm.op(_JEQ_K, audit_arch, jt=name)
    asm.op(_RET_K, eperm)  # a foreign ABI: refuse every call

    for name, _ in _ARCHES:
        numbers = SYSCALL_NUMBERS[name]
        asm.label(name)
        asm.op(_LD_W_ABS, _OFF_NR)
        if name == "x86_64":
            asm.op(_JGE_K, _X32_SYSCALL_BIT, jt="deny")
        asm.op(_JEQ_K, numbers["clone"], jt="check_newuser")
        asm.op(_JEQ_K, numbers["unshare"], jt="check_newuser")
        asm.op(_JEQ_K, numbers["clone3"], jt="enosys")
        for syscall in BLOCKED_SYSCALLS:
            asm.op(_JEQ_K, numbers[syscall], jt="deny")
        asm.op(_RET_K, SECCOMP_RET_ALLOW)

    asm.label("check_newuser")
    asm.op(_LD_W_ABS, _OFF_ARG0_LO)
    asm.op(_JSET_K, CLONE_NEWUSER, jt="deny")
    asm.op(_RET_K, SECCOMP_RET_ALLOW)
    asm.label("enosys")
    asm.op(_RET_K, SECCOMP_RET_ERRNO | errno.ENOSYS)
    asm.label("deny")
    asm.op(_RET_K, eperm)
    return asm.assemble()
