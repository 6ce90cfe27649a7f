#ifndef SOUS_CLIBSSH2_SHIM_H
#define SOUS_CLIBSSH2_SHIM_H
// libssh2's function-like macros are not imported by Swift; these wrappers expose them.
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* A session's socket I/O, installed as libssh2's send and recv callbacks (the session's abstract points here).
 * libssh2 1.10.0 talks to ssh-agent through the same callbacks (agent.c, agent_transact_unix: session->send and
 * session->recv on the agent's socket, which it leaves blocking, in a loop that never ends on end-of-file).
 * So on any socket but the SSH one, each call first polls until agent_deadline_ms: a stalled agent fails the
 * call with ETIMEDOUT (and sets agent_timed_out), one that hangs up fails it with ECONNRESET. The SSH socket,
 * non-blocking, is passed straight through, as libssh2's own _libssh2_send and _libssh2_recv do. */
struct sous_io {
    int ssh_fd;
    long long agent_deadline_ms; /* CLOCK_MONOTONIC; 0 (the start) lets no agent call wait at all */
    int agent_timed_out;
};
static inline long long sous_monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}
static inline void sous_io_set_agent_deadline(struct sous_io *io, long long ms_from_now) {
    io->agent_deadline_ms = sous_monotonic_ms() + ms_from_now;
    io->agent_timed_out = 0;
}
/* 0 when the agent socket is ready, else -ETIMEDOUT or -errno. */
static inline int sous_io_wait_agent(struct sous_io *io, int fd, short events) {
    for (;;) {
        long long left = io->agent_deadline_ms - sous_monotonic_ms();
        struct pollfd p = { fd, events, 0 };
        int rc = poll(&p, 1, left > 0 ? (int)left : 0);
        if (rc > 0) return 0;
        if (rc == 0) { io->agent_timed_out = 1; return -ETIMEDOUT; }
        if (errno != EINTR) return -errno;
    }
}
static inline ssize_t sous_io_result(ssize_t rc) {
    return rc < 0 ? -(errno == EWOULDBLOCK ? EAGAIN : errno) : rc;
}
static inline ssize_t sous_io_recv(libssh2_socket_t fd, void *buf, size_t len, int flags, void **abstract) {
    struct sous_io *io = (struct sous_io *)*abstract;
    if (fd == io->ssh_fd) return sous_io_result(recv(fd, buf, len, flags));
    int w = sous_io_wait_agent(io, fd, POLLIN);
    if (w) return w;
    ssize_t rc = recv(fd, buf, len, flags);
    return rc == 0 && len > 0 ? -ECONNRESET : sous_io_result(rc);
}
static inline ssize_t sous_io_send(libssh2_socket_t fd, const void *buf, size_t len, int flags, void **abstract) {
    struct sous_io *io = (struct sous_io *)*abstract;
    if (fd != io->ssh_fd) {
        int w = sous_io_wait_agent(io, fd, POLLOUT);
        if (w) return w;
    }
    return sous_io_result(send(fd, buf, len, flags));
}
/* A session whose I/O goes through io (which must outlive it). */
static inline LIBSSH2_SESSION *sous_session_init(struct sous_io *io) {
    LIBSSH2_SESSION *s = libssh2_session_init_ex(NULL, NULL, NULL, io);
    if (s) {
        libssh2_session_callback_set(s, LIBSSH2_CALLBACK_RECV, (void *)sous_io_recv);
        libssh2_session_callback_set(s, LIBSSH2_CALLBACK_SEND, (void *)sous_io_send);
    }
    return s;
}
static inline LIBSSH2_CHANNEL *sous_channel_open_session(LIBSSH2_SESSION *s) {
    return libssh2_channel_open_ex(s, "session", sizeof("session") - 1,
                                   LIBSSH2_CHANNEL_WINDOW_DEFAULT, LIBSSH2_CHANNEL_PACKET_DEFAULT, NULL, 0);
}
static inline int sous_channel_exec(LIBSSH2_CHANNEL *c, const char *command) {
    return libssh2_channel_process_startup(c, "exec", sizeof("exec") - 1, command, (unsigned int)strlen(command));
}
static inline ssize_t sous_channel_read(LIBSSH2_CHANNEL *c, char *buf, size_t len) {
    return libssh2_channel_read_ex(c, 0, buf, len);
}
static inline ssize_t sous_channel_read_stderr(LIBSSH2_CHANNEL *c, char *buf, size_t len) {
    return libssh2_channel_read_ex(c, SSH_EXTENDED_DATA_STDERR, buf, len);
}
static inline ssize_t sous_channel_write(LIBSSH2_CHANNEL *c, const char *buf, size_t len) {
    return libssh2_channel_write_ex(c, 0, buf, len);
}
static inline int sous_channel_close_stdin(LIBSSH2_CHANNEL *c) {
    return libssh2_channel_send_eof(c);
}
static inline int sous_userauth_publickey_fromfile(LIBSSH2_SESSION *s, const char *user,
                                                   const char *pub, const char *priv, const char *pass) {
    return libssh2_userauth_publickey_fromfile_ex(s, user, (unsigned int)strlen(user), pub, priv, pass);
}
static inline LIBSSH2_SFTP_HANDLE *sous_sftp_open(LIBSSH2_SFTP *sftp, const char *path, unsigned long flags, long mode) {
    return libssh2_sftp_open_ex(sftp, path, (unsigned int)strlen(path), flags, mode, LIBSSH2_SFTP_OPENFILE);
}
static inline int sous_sftp_unlink(LIBSSH2_SFTP *sftp, const char *path) {
    return libssh2_sftp_unlink_ex(sftp, path, (unsigned int)strlen(path));
}
static inline int sous_sftp_setstat_mode(LIBSSH2_SFTP *sftp, const char *path, unsigned long mode) {
    LIBSSH2_SFTP_ATTRIBUTES attrs;
    memset(&attrs, 0, sizeof(attrs));
    attrs.flags = LIBSSH2_SFTP_ATTR_PERMISSIONS;
    attrs.permissions = mode;
    return libssh2_sftp_stat_ex(sftp, path, (unsigned int)strlen(path), LIBSSH2_SFTP_SETSTAT, &attrs);
}
static inline int sous_sftp_stat_mode(LIBSSH2_SFTP *sftp, const char *path, unsigned long *mode) {
    LIBSSH2_SFTP_ATTRIBUTES attrs;
    memset(&attrs, 0, sizeof(attrs));
    int rc = libssh2_sftp_stat_ex(sftp, path, (unsigned int)strlen(path), LIBSSH2_SFTP_STAT, &attrs);
    if (rc == 0) *mode = attrs.permissions;
    return rc;
}
static inline const char *sous_hostkey_type_name(int hostkey_type) {
    switch (hostkey_type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
    case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
    default: return "unknown";
    }
}
static inline int sous_sftp_open_flags_create(void) {
    return LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL;
}
static inline int sous_session_last_errno(LIBSSH2_SESSION *s) { return libssh2_session_last_errno(s); }
static inline const char *sous_session_last_error(LIBSSH2_SESSION *s) {
    char *msg = NULL;
    libssh2_session_last_error(s, &msg, NULL, 0);
    return msg ? msg : "";
}
#endif
