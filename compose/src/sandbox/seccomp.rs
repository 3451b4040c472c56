//! The seccomp filter of the sandbox: a classic-BPF program, generated here and handed to
//! bwrap (`--seccomp FD`), which installs it just before it executes the command. Pure logic.
//!
//! The program, in order:
//! 1. A system call made through another ABI than the native one (on x86_64: `int 0x80`, the
//!    i386 ABI; or the x32 ABI, whose numbers carry bit `0x40000000`) kills the process. Those
//!    ABIs number the calls differently, so a filter written with native numbers would let them
//!    through; nothing a Debian tree of our architecture installs needs them.
//! 2. Each call in [`DENIED`] fails with `EPERM`: file handles (`open_by_handle_at` opens any
//!    inode of a file system the tree shares with the host), kernel keyrings, BPF, perf,
//!    userfaultfd, io_uring (whose operations seccomp never sees), ptrace and cross-process
//!    memory access, module loading, kexec, reboot, swap, mounts and namespace changes,
//!    accounting, quotas, fanotify, the kernel log, raw port I/O.
//! 3. `clone` and `unshare` asking for a new namespace fail with `EPERM` (a new user namespace
//!    would hand the script every capability over it, mounts included). `clone3` passes its
//!    flags in memory a filter cannot read, so it fails with `ENOSYS` and glibc falls back to
//!    `clone`, as it does on kernels older than 5.3.
//! 4. Everything else is allowed.
//!
//! Steps 2 and 3 are a binary search on the call's number, so an allowed call passes about ten
//! instructions rather than one comparison per denied call.
//!
//! Denied calls return `EPERM` rather than killing, so a script that probes for a feature
//! (systemd tools probe keyrings and io_uring) takes its fallback and goes on.

/// The `seccomp_data` fields the program reads (`include/uapi/linux/seccomp.h`).
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
/// The low 32 bits of the first argument (the namespace flags are all in them).
#[cfg(target_endian = "little")]
const ARG0_LOW_OFFSET: u32 = 16;
#[cfg(target_endian = "big")]
const ARG0_LOW_OFFSET: u32 = 20;

/// `AUDIT_ARCH_*` of the architecture we run on (`include/uapi/linux/audit.h`).
#[cfg(target_arch = "x86_64")]
pub const NATIVE_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
pub const NATIVE_ARCH: u32 = 0xc000_00b7;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the sandbox's seccomp filter knows x86_64 and aarch64; add this architecture's AUDIT_ARCH and its other ABIs");

/// x86_64's x32 ABI marks its system call numbers with this bit.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Filter results (`SECCOMP_RET_*`).
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

/// Classic BPF opcodes the program uses (`include/uapi/linux/bpf_common.h`).
/// `BPF_LD | BPF_W | BPF_ABS`: load the 32-bit word at offset k of `seccomp_data`.
const LD_W_ABS: u16 = 0x20;
/// `BPF_JMP | BPF_JEQ | BPF_K` and its `BPF_JGE`, `BPF_JSET` siblings.
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGE_K: u16 = 0x35;
const JMP_JSET_K: u16 = 0x45;
/// `BPF_RET | BPF_K`: return k.
const RET_K: u16 = 0x06;

/// Namespace flags of `clone` and `unshare`. `CLONE_NEWTIME` is left out: in `clone`'s flags
/// that bit is part of the exit signal, and a time namespace only shifts clocks.
pub const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

/// System calls that fail with `EPERM` in the sandbox, by name and native number.
pub const DENIED: &[(&str, libc::c_long)] = &[
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("kcmp", libc::SYS_kcmp),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("setns", libc::SYS_setns),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("syslog", libc::SYS_syslog),
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
    #[cfg(target_arch = "x86_64")]
    ("uselib", libc::SYS_uselib),
];

/// One classic-BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

fn load(offset: u32) -> Insn {
    insn(LD_W_ABS, 0, 0, offset)
}

fn ret(action: u32) -> Insn {
    insn(RET_K, 0, 0, action)
}

fn errno(errno: i32) -> u32 {
    RET_ERRNO | (errno as u32 & 0xffff)
}

/// What the filter does with one system call it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    Errno(i32),
    /// `EPERM` when the first argument asks for a new namespace, else allowed.
    DenyNamespaces,
}

/// Every call the filter names, sorted by number; the others are allowed.
fn rules() -> Vec<(u32, Rule)> {
    let mut rules: Vec<(u32, Rule)> = DENIED
        .iter()
        .map(|(_, nr)| (*nr as u32, Rule::Errno(libc::EPERM)))
        .collect();
    rules.extend([
        (libc::SYS_clone3 as u32, Rule::Errno(libc::ENOSYS)),
        (libc::SYS_clone as u32, Rule::DenyNamespaces),
        (libc::SYS_unshare as u32, Rule::DenyNamespaces),
    ]);
    rules.sort_by_key(|(nr, _)| *nr);
    rules
}

/// The instructions that end a call `rule` matched (each path returns).
fn body(rule: Rule) -> Vec<Insn> {
    match rule {
        Rule::Errno(e) => vec![ret(errno(e))],
        Rule::DenyNamespaces => vec![
            load(ARG0_LOW_OFFSET),
            insn(JMP_JSET_K, 0, 1, NAMESPACE_FLAGS),
            ret(errno(libc::EPERM)),
            ret(RET_ALLOW),
        ],
    }
}

/// A binary search over the sorted `rules` on the call number in A, so an allowed call (most
/// of them) costs a handful of comparisons rather than one per rule: at most three rules are
/// compared one by one, larger sets are split at their middle number.
fn search(rules: &[(u32, Rule)]) -> Vec<Insn> {
    if rules.len() <= 3 {
        let mut p = Vec::new();
        for (nr, rule) in rules {
            let body = body(*rule);
            p.push(insn(JMP_JEQ_K, 0, body.len() as u8, *nr));
            p.extend(body);
        }
        p.push(ret(RET_ALLOW));
        return p;
    }
    let (below, from) = rules.split_at(rules.len() / 2);
    let split = from[0].0;
    let (below, from) = (search(below), search(from));
    let skip = u8::try_from(below.len()).expect("a classic-BPF jump reaches 255 instructions");
    let mut p = vec![insn(JMP_JGE_K, skip, 0, split)];
    p.extend(below);
    p.extend(from);
    p
}

/// The filter program.
pub fn program() -> Vec<Insn> {
    let mut p = vec![
        load(ARCH_OFFSET),
        // Native: skip the kill.
        insn(JMP_JEQ_K, 1, 0, NATIVE_ARCH),
        ret(RET_KILL_PROCESS),
        load(NR_OFFSET),
    ];
    if cfg!(target_arch = "x86_64") {
        p.extend([
            insn(JMP_JGE_K, 0, 1, X32_SYSCALL_BIT),
            ret(RET_KILL_PROCESS),
        ]);
    }
    p.extend(search(&rules()));
    p
}

/// The program as bwrap reads it from its `--seccomp` file descriptor: the instructions'
/// bytes, in the machine's byte order.
pub fn program_bytes() -> Vec<u8> {
    program()
        .iter()
        .flat_map(|i| {
            let mut bytes = Vec::with_capacity(8);
            bytes.extend(i.code.to_ne_bytes());
            bytes.push(i.jt);
            bytes.push(i.jf);
            bytes.extend(i.k.to_ne_bytes());
            bytes
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of `struct seccomp_data` the program may read.
    struct Call {
        nr: u32,
        arch: u32,
        arg0: u64,
    }

    fn call(nr: libc::c_long) -> Call {
        Call {
            nr: nr as u32,
            arch: NATIVE_ARCH,
            arg0: 0,
        }
    }

    /// Runs the program over one system call as the kernel would: a small classic-BPF
    /// interpreter for the instructions the program may contain. Returns the verdict.
    fn evaluate(program: &[Insn], call: &Call) -> u32 {
        run(program, call).0
    }

    /// The verdict and how many instructions ran to reach it.
    fn run(program: &[Insn], call: &Call) -> (u32, usize) {
        let word = |offset: u32| -> u32 {
            let mut data = [0u8; 64];
            data[0..4].copy_from_slice(&call.nr.to_ne_bytes());
            data[4..8].copy_from_slice(&call.arch.to_ne_bytes());
            data[16..24].copy_from_slice(&call.arg0.to_ne_bytes());
            let o = offset as usize;
            assert!(
                o.is_multiple_of(4) && o + 4 <= data.len(),
                "bad load offset {o}"
            );
            u32::from_ne_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]])
        };
        let mut a = 0u32;
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            steps += 1;
            let i = program.get(pc).expect("the program ran off its end");
            let jump = |taken: bool| pc + 1 + usize::from(if taken { i.jt } else { i.jf });
            pc = match i.code {
                LD_W_ABS => {
                    a = word(i.k);
                    pc + 1
                }
                JMP_JEQ_K => jump(a == i.k),
                JMP_JGE_K => jump(a >= i.k),
                JMP_JSET_K => jump(a & i.k != 0),
                RET_K => return (i.k, steps),
                other => panic!("unexpected opcode {other:#x}"),
            };
        }
    }

    fn verdict(call: &Call) -> u32 {
        evaluate(&program(), call)
    }

    #[test]
    fn every_denied_call_fails_with_eperm() {
        for (name, nr) in DENIED {
            assert_eq!(verdict(&call(*nr)), RET_ERRNO | 1, "{name}");
        }
        let names: Vec<&str> = DENIED.iter().map(|(n, _)| *n).collect();
        for must in [
            "open_by_handle_at",
            "name_to_handle_at",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "request_key",
            "userfaultfd",
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "kexec_file_load",
            "io_uring_setup",
        ] {
            assert!(names.contains(&must), "{must} is not denied");
        }
    }

    #[test]
    fn what_dpkg_and_scripts_use_is_allowed() {
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_fchownat,
            libc::SYS_setxattr,
            libc::SYS_renameat2,
            libc::SYS_wait4,
            libc::SYS_exit_group,
        ] {
            assert_eq!(verdict(&call(nr)), RET_ALLOW, "syscall {nr}");
        }
    }

    #[test]
    fn another_abi_is_killed() {
        let foreign = Call {
            arch: 0x4000_0003, // AUDIT_ARCH_I386
            ..call(libc::SYS_read)
        };
        assert_eq!(verdict(&foreign), RET_KILL_PROCESS);
        if cfg!(target_arch = "x86_64") {
            let x32 = call(libc::SYS_open_by_handle_at | X32_SYSCALL_BIT as libc::c_long);
            assert_eq!(verdict(&x32), RET_KILL_PROCESS);
        }
    }

    #[test]
    fn new_namespaces_are_refused_and_threads_are_not() {
        for nr in [libc::SYS_clone, libc::SYS_unshare] {
            for flag in [libc::CLONE_NEWUSER, libc::CLONE_NEWNS, libc::CLONE_NEWNET] {
                let c = Call {
                    arg0: flag as u64,
                    ..call(nr)
                };
                assert_eq!(verdict(&c), RET_ERRNO | 1, "syscall {nr} flag {flag:#x}");
            }
        }
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        let fork = libc::SIGCHLD as u64 | libc::CLONE_CHILD_SETTID as u64;
        for arg0 in [thread, fork, 0xffff_ffff_0000_0000 | fork] {
            let c = Call {
                arg0,
                ..call(libc::SYS_clone)
            };
            assert_eq!(verdict(&c), RET_ALLOW, "clone flags {arg0:#x}");
        }
        let files = Call {
            arg0: libc::CLONE_FILES as u64,
            ..call(libc::SYS_unshare)
        };
        assert_eq!(verdict(&files), RET_ALLOW);
        assert_eq!(
            verdict(&call(libc::SYS_clone3)),
            RET_ERRNO | libc::ENOSYS as u32
        );
    }

    /// What the filter must answer, written plainly.
    fn reference(call: &Call) -> u32 {
        let nr = call.nr as libc::c_long;
        if DENIED.iter().any(|(_, d)| *d == nr) {
            return RET_ERRNO | libc::EPERM as u32;
        }
        if nr == libc::SYS_clone3 {
            return RET_ERRNO | libc::ENOSYS as u32;
        }
        let namespaces = call.arg0 as u32 & NAMESPACE_FLAGS != 0;
        if (nr == libc::SYS_clone || nr == libc::SYS_unshare) && namespaces {
            return RET_ERRNO | libc::EPERM as u32;
        }
        RET_ALLOW
    }

    #[test]
    fn the_search_answers_like_the_plain_rules_for_every_call_number() {
        let program = program();
        for nr in 0..1100 {
            for arg0 in [0, libc::CLONE_NEWUSER as u64, libc::CLONE_FILES as u64] {
                let c = Call { arg0, ..call(nr) };
                assert_eq!(
                    evaluate(&program, &c),
                    reference(&c),
                    "nr {nr} arg0 {arg0:#x}"
                );
            }
        }
    }

    #[test]
    fn an_allowed_call_passes_few_instructions() {
        let program = program();
        let depth = rules().len().ilog2() as usize;
        assert!(program.len() > 90, "{}", program.len());
        let steps = |nr| run(&program, &call(nr)).1;
        for nr in [libc::SYS_read, libc::SYS_openat, libc::SYS_newfstatat] {
            // Arch and x32 checks, the search's splits, up to three rules, the return.
            assert!(
                steps(nr) <= 6 + depth + 4,
                "syscall {nr}: {} steps",
                steps(nr)
            );
        }
    }

    #[test]
    fn bytes_are_eight_per_instruction_and_the_program_fits_the_kernel_limit() {
        let program = program();
        assert!(program.len() < 4096, "BPF_MAXINSNS is 4096");
        let bytes = program_bytes();
        assert_eq!(bytes.len(), program.len() * 8);
        let first = &bytes[0..8];
        assert_eq!(u16::from_ne_bytes([first[0], first[1]]), LD_W_ABS);
        assert_eq!(
            u32::from_ne_bytes([first[4], first[5], first[6], first[7]]),
            ARCH_OFFSET
        );
    }
}
