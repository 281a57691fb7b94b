"""The seccomp filter every sandboxed role runs under, modelled on Docker's default profile.

Docker allows a long list of system calls and refuses the rest; this filter does the converse
(everything is allowed but the calls below), which refuses the same dangerous calls and keeps
working with whatever new, harmless call a future glibc or torch makes. What it refuses is what a
process with no capabilities has no business doing and what the kernel would otherwise let it do to
a process or key of its own uid: tracing or reading another process's memory (ptrace,
process_vm_*), the kernel keyring (add_key, keyctl, request_key), new namespaces and mounts
(unshare, setns, mount, clone with CLONE_NEW*), kernel attack surface that Docker closes
(bpf, perf_event_open, userfaultfd, io_uring) and the calls that only an administrator makes
(module loading, kexec, reboot, swap, the clock).

The filter is built by libseccomp (the `pyseccomp` binding); nothing here assembles BPF by hand.
System calls of other ABIs (32-bit calls on a 64-bit kernel) kill the process: libseccomp's
default for a foreign architecture.
"""

from __future__ import annotations

import errno

try:  # libseccomp is a shared library the machine may lack; the sandbox then says so
    import pyseccomp as seccomp
except (ImportError, OSError) as _exc:  # OSError: the binding found no libseccomp.so
    seccomp = None
    _MISSING = f"libseccomp is not available ({_exc})"
else:
    _MISSING = ""

# Refused with EPERM, as Docker's default profile refuses them (no capability holds them here).
DENIED = (
    # another process's memory and registers
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    # the kernel keyring: keys outlive the job
    "add_key",
    "keyctl",
    "request_key",
    # namespaces, mounts, a new root
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    # kernel attack surface Docker closes
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "fanotify_init",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    # the administrator's calls: modules, kexec, reboot, swap, quotas, accounting, the clock
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "query_module",
    "get_kernel_syms",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "quotactl",
    "quotactl_fd",
    "acct",
    "clock_settime",
    "clock_adjtime",
    "settimeofday",
    "stime",
    "adjtimex",
    "nfsservctl",
)
# clone() with any of these flags makes a namespace: refused, like unshare().
NAMESPACE_FLAGS = {
    "CLONE_NEWTIME": 0x00000080,
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}


class SeccompUnavailable(Exception):
    """Raised when the filter cannot be built or loaded (no libseccomp, or the kernel refused it)."""


def install() -> list[str]:
    """Load the filter into this process (inherited by every child); the system calls it refuses.

    Needs no_new_privs or CAP_SYS_ADMIN; libseccomp sets no_new_privs itself. Irreversible.
    """
    if seccomp is None:
        raise SeccompUnavailable(_MISSING)
    try:
        rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        denied = [name for name in DENIED if _refuse(rules, seccomp.ERRNO(errno.EPERM), name)]
        for flag in NAMESPACE_FLAGS.values():
            # the flags are clone's first argument on x86_64 and aarch64 alike
            rules.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        # clone3 passes its flags in memory, out of a filter's reach: say it does not exist, as
        # Docker does, and glibc falls back to clone(), whose flags the rules above see.
        rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        rules.load()
    except OSError as exc:
        raise SeccompUnavailable(f"the seccomp filter could not be loaded ({exc.strerror or exc})") from exc
    return [*denied, "clone with CLONE_NEW*", "clone3 (ENOSYS)"]


def _refuse(rules: object, action: int, name: str) -> bool:
    """Add one rule; False when this kernel's architecture has no such call (vm86, stime ...)."""
    try:
        number = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
    except (OSError, ValueError):
        return False
    if number < 0:  # libseccomp's pseudo-number: the call does not exist on this architecture
        return False
    rules.add_rule(action, number)  # type: ignore[attr-defined]
    return True


def summary(denied: list[str]) -> str:
    """One line for the report: what the filter refuses."""
    return "Docker-like filter: EPERM for " + ", ".join(denied)
