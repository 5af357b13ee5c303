"""The seccomp program, checked by a tiny classic-BPF interpreter for both
architectures (aarch64 cannot be run here) and against the kernel headers."""

from __future__ import annotations

import errno
import os
import re
import struct

import pytest

from pyisolate.sandbox import _seccomp as sc

I386 = 0x40000003


def run_bpf(prog: bytes, *, arch: int, nr: int, arg0: int = 0) -> int:
    data = struct.pack("<iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    insns = [struct.unpack("=HBBI", prog[i : i + 8]) for i in range(0, len(prog), 8)]
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code in (0x15, 0x35, 0x45):
            hit = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if hit else jf)
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


PROG = sc.build_filter()
EPERM = sc.SECCOMP_RET_ERRNO | errno.EPERM
ARCHES = [("x86_64", sc.AUDIT_ARCH_X86_64), ("aarch64", sc.AUDIT_ARCH_AARCH64)]


@pytest.mark.parametrize(("name", "arch"), ARCHES)
def test_blocked_syscalls_get_eperm(name: str, arch: int) -> None:
    for syscall in sc.BLOCKED_SYSCALLS:
        assert run_bpf(PROG, arch=arch, nr=sc.SYSCALL_NUMBERS[name][syscall]) == EPERM, syscall


@pytest.mark.parametrize(("name", "arch"), ARCHES)
def test_user_namespaces_refused_but_fork_allowed(name: str, arch: int) -> None:
    nums = sc.SYSCALL_NUMBERS[name]
    for call in ("clone", "unshare"):
        assert run_bpf(PROG, arch=arch, nr=nums[call], arg0=sc.CLONE_NEWUSER | 17) == EPERM
        assert run_bpf(PROG, arch=arch, nr=nums[call], arg0=0x11) == sc.SECCOMP_RET_ALLOW
    assert run_bpf(PROG, arch=arch, nr=nums["clone3"]) == sc.SECCOMP_RET_ERRNO | errno.ENOSYS


@pytest.mark.parametrize(("name", "arch"), ARCHES)
def test_ordinary_syscalls_allowed(name: str, arch: int) -> None:
    blocked = set(sc.SYSCALL_NUMBERS[name].values())
    for nr in range(0, 450):
        if nr not in blocked:
            assert run_bpf(PROG, arch=arch, nr=nr) == sc.SECCOMP_RET_ALLOW, nr


def test_foreign_abis_refused() -> None:
    # i386 via int 0x80 on x86_64: number 0 is restart_syscall there, all refused.
    assert run_bpf(PROG, arch=I386, nr=0) == EPERM
    # x32 ABI: x86_64 arch, syscall bit 30 set.
    assert run_bpf(PROG, arch=sc.AUDIT_ARCH_X86_64, nr=0x40000000 | 272) == EPERM


@pytest.mark.parametrize(
    ("name", "header", "pattern"),
    [
        ("x86_64", "/usr/include/x86_64-linux-gnu/asm/unistd_64.h", r"#define __NR_(\w+)\s+(\d+)"),
        ("aarch64", "/usr/include/asm-generic/unistd.h", r"#define __NR(?:3264)?_(\w+)\s+(\d+)"),
    ],
)
def test_numbers_match_kernel_headers(name: str, header: str, pattern: str) -> None:
    if not os.path.exists(header):
        pytest.skip(f"{header} not installed")
    with open(header) as fh:
        table = {m[1]: int(m[2]) for m in re.finditer(pattern, fh.read())}
    for syscall, number in sc.SYSCALL_NUMBERS[name].items():
        assert table[syscall] == number, syscall
