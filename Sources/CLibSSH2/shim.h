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
static inline int sous_knownhost_check(LIBSSH2_KNOWNHOSTS *kh, const char *host, int port,
                                       const char *key, size_t keylen, int typemask) {
    struct libssh2_knownhost *found = NULL;
    return libssh2_knownhost_checkp(kh, host, port, key, keylen, typemask, &found);
}
static inline int sous_knownhost_readfile(LIBSSH2_KNOWNHOSTS *kh, const char *path) {
    return libssh2_knownhost_readfile(kh, path, LIBSSH2_KNOWNHOST_FILE_OPENSSH);
}
/* Adds host (already in "[host]:port" form when the port is not 22) and writes its known_hosts line into buf. */
static inline int sous_knownhost_line(LIBSSH2_KNOWNHOSTS *kh, const char *host, const char *key, size_t keylen,
                                      int typemask, char *buf, size_t buflen, size_t *outlen) {
    struct libssh2_knownhost *store = NULL;
    int rc = libssh2_knownhost_addc(kh, host, NULL, key, keylen, NULL, 0,
                                    LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | typemask, &store);
    if (rc) return rc;
    return libssh2_knownhost_writeline(kh, store, buf, buflen, outlen, LIBSSH2_KNOWNHOST_FILE_OPENSSH);
}
/* The known_hosts key-type bits for a session host-key type. */
static inline int sous_knownhost_keytype(int hostkey_type) {
    switch (hostkey_type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
    default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
    }
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
