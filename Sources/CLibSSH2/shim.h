#ifndef SOUS_CLIBSSH2_SHIM_H
#define SOUS_CLIBSSH2_SHIM_H
// libssh2's function-like macros are not imported by Swift; these wrappers expose them.
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <string.h>

static inline LIBSSH2_SESSION *sous_session_init(void) {
    return libssh2_session_init_ex(NULL, NULL, NULL, NULL);
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
static inline int sous_channel_signal(LIBSSH2_CHANNEL *c, const char *name) {
    // SSH "signal" channel request (RFC 4254 6.9); OpenSSH honours it since 7.9.
    return libssh2_channel_signal_ex(c, name, strlen(name));
}
static inline int sous_userauth_publickey_fromfile(LIBSSH2_SESSION *s, const char *user,
                                                   const char *pub, const char *priv, const char *pass) {
    return libssh2_userauth_publickey_fromfile_ex(s, user, (unsigned int)strlen(user), pub, priv, pass);
}
static inline LIBSSH2_SFTP_HANDLE *sous_sftp_open(LIBSSH2_SFTP *sftp, const char *path, unsigned long flags, long mode) {
    return libssh2_sftp_open_ex(sftp, path, (unsigned int)strlen(path), flags, mode, LIBSSH2_SFTP_OPENFILE);
}
static inline int sous_sftp_rename(LIBSSH2_SFTP *sftp, const char *from, const char *to) {
    return libssh2_sftp_rename_ex(sftp, from, (unsigned int)strlen(from), to, (unsigned int)strlen(to),
                                  LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC | LIBSSH2_SFTP_RENAME_NATIVE);
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
static inline int sous_knownhost_check(LIBSSH2_KNOWNHOSTS *kh, const char *host, int port,
                                       const char *key, size_t keylen, int typemask) {
    struct libssh2_knownhost *found = NULL;
    return libssh2_knownhost_checkp(kh, host, port, key, keylen, typemask, &found);
}
static inline int sous_knownhost_readfile(LIBSSH2_KNOWNHOSTS *kh, const char *path) {
    return libssh2_knownhost_readfile(kh, path, LIBSSH2_KNOWNHOST_FILE_OPENSSH);
}
static inline int sous_session_last_errno(LIBSSH2_SESSION *s) { return libssh2_session_last_errno(s); }
static inline const char *sous_session_last_error(LIBSSH2_SESSION *s) {
    char *msg = NULL;
    libssh2_session_last_error(s, &msg, NULL, 0);
    return msg ? msg : "";
}
#endif
