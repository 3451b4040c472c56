/* A hostile program the tests ship in a package and run from its postinst: it tries the
 * system calls the sandbox's seccomp filter must refuse and prints one line per call,
 * "NAME RESULT", RESULT being "EPERM", "ok", "errno N" or "killed N" (the signal that ended a
 * child that tried it). Usage: probe [HANDLE_HEX] [ABSTRACT_SOCKET_NAME]
 * With "make-handle PATH" it prints PATH's file handle as hex instead; that is the only mode
 * to run outside a sandbox (the others mount, mknod and reboot where they are not refused). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long ret) {
    if (ret >= 0)
        printf("%s ok\n", name);
    else if (errno == EPERM)
        printf("%s EPERM\n", name);
    else
        printf("%s errno %d\n", name, errno);
    fflush(stdout);
}

/* Runs fn in a child; reports how the child ended. */
static void in_child(const char *name, void (*fn)(void)) {
    pid_t pid = fork();
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status))
        printf("%s killed %d\n", name, WTERMSIG(status));
    else
        printf("%s exited %d\n", name, WEXITSTATUS(status));
    fflush(stdout);
}

static void x32_getpid(void) { syscall(0x40000000 | SYS_getpid); }

static void i386_getpid(void) {
    long ret;
    /* eax 20 is getpid in the i386 ABI. */
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
}

int main(int argc, char **argv) {
    struct {
        struct file_handle fh;
        unsigned char bytes[128];
    } h;
    int mount_id;
    if (argc == 3 && strcmp(argv[1], "make-handle") == 0) {
        h.fh.handle_bytes = sizeof h.bytes;
        if (name_to_handle_at(AT_FDCWD, argv[2], &h.fh, &mount_id, 0) != 0) {
            perror("name_to_handle_at");
            return 1;
        }
        printf("%08x", h.fh.handle_type);
        for (unsigned i = 0; i < h.fh.handle_bytes; i++)
            printf("%02x", h.fh.f_handle[i]);
        printf("\n");
        return 0;
    }

    h.fh.handle_bytes = sizeof h.bytes;
    report("name_to_handle_at", name_to_handle_at(AT_FDCWD, "/", &h.fh, &mount_id, 0));
    if (argc > 1 && strlen(argv[1]) > 8) {
        /* A handle of a host file, made outside: open it through the tree's file system. */
        const char *hex = argv[1];
        unsigned type;
        sscanf(hex, "%8x", &type);
        h.fh.handle_type = type;
        h.fh.handle_bytes = (strlen(hex) - 8) / 2;
        for (unsigned i = 0; i < h.fh.handle_bytes && i < sizeof h.bytes; i++)
            sscanf(hex + 8 + 2 * i, "%2hhx", &h.fh.f_handle[i]);
        int root = open("/", O_RDONLY | O_DIRECTORY);
        report("open_by_handle_at", syscall(SYS_open_by_handle_at, root, &h.fh, O_RDONLY));
    }
    report("add_key", syscall(SYS_add_key, "user", "keel", "x", 1, -2 /* process keyring */));
    report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -2, 0));
    report("request_key", syscall(SYS_request_key, "user", "keel", NULL, 0));
    report("bpf", syscall(SYS_bpf, 0, NULL, 0));
    report("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    report("userfaultfd", syscall(SYS_userfaultfd, 0));
    unsigned char params[120] = {0};
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, params));
    report("init_module", syscall(SYS_init_module, NULL, 0, ""));
    report("finit_module", syscall(SYS_finit_module, 0, "", 0));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    report("ptrace", ptrace(PTRACE_TRACEME, 0, NULL, NULL));
    report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
    report("unshare_user", unshare(CLONE_NEWUSER));
    report("unshare_mount", unshare(CLONE_NEWNS));
    report("setns", syscall(SYS_setns, 0, 0));
    report("reboot", syscall(SYS_reboot, 0, 0, 0, NULL));
    report("swapon", syscall(SYS_swapon, "/nonexistent", 0));
    report("mknod_block", mknod("/tmp/keel-disk", S_IFBLK | 0600, makedev(8, 0)));
    in_child("x32_getpid", x32_getpid);
    in_child("i386_getpid", i386_getpid);
    if (argc > 2) {
        /* An abstract unix socket the host listens on: such names belong to a network
         * namespace, so the sandbox must not reach it. */
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        size_t len = strlen(argv[2]);
        memcpy(addr.sun_path + 1, argv[2], len);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        int r = connect(s, (struct sockaddr *)&addr, offsetof(struct sockaddr_un, sun_path) + 1 + len);
        if (r == 0)
            printf("abstract_socket connected\n");
        else
            printf("abstract_socket errno %d\n", errno);
    }
    return 0;
}
