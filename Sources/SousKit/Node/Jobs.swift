import Foundation

/// The commands `sous model` runs on a node: the HF cache's work files, sizes, and background jobs (a
/// download or a copy that survives a dropped connection). Paths and argv are positional arguments.
public enum HFCacheOps {
    /// Removes each file and the blob its snapshot link points to.
    public static func removeWithBlobs(_ paths: [String]) -> RemoteCommand {
        .shell("for f in \"$@\"; do rm -f -- \"$(readlink -f -- \"$f\")\" \"$f\"; done", args: paths, timeout: .seconds(60))
    }

    /// Creates ~/.cache/sous (0700) and prints its path.
    public static func workDir() -> RemoteCommand {
        .shell("mkdir -p \"$HOME/.cache/sous\" && chmod 700 \"$HOME/.cache/sous\" && printf %s \"$HOME/.cache/sous\"", timeout: .seconds(30))
    }

    /// The node's Hugging Face CLI (`hf`, else `huggingface-cli`), or nothing.
    public static func findCLI() -> RemoteCommand {
        .shell("command -v hf || command -v huggingface-cli || true", timeout: .seconds(30))
    }

    /// `UID:GID` of the login user.
    public static func ids() -> RemoteCommand { .shell("printf '%s:%s' \"$(id -u)\" \"$(id -g)\"", timeout: .seconds(30)) }

    /// Bytes under `dir`, partial downloads excluded (0 when it does not exist).
    public static func size(_ dir: String) -> RemoteCommand {
        .shell("du -sb --exclude='*.incomplete' \"$1\" 2>/dev/null | cut -f1", args: [dir], timeout: .seconds(600))
    }

    /// Bytes of a download so far: the blobs and the partial files being written (`*.incomplete`; the CLI writes a
    /// file's bytes there and renames it when complete).
    public static func downloaded(_ blobs: String) -> RemoteCommand {
        .shell("du -sb \"$1\" 2>/dev/null | cut -f1", args: [blobs], timeout: .seconds(600))
    }

    /// `argv`, after removing the partial files no CLI resumes: huggingface_hub ≥ 1.x downloads each file to a
    /// process-unique `<etag>.<8 hex>.incomplete` and removes it when it fails (file_download.py 2.4.0 :2004,
    /// :2046), but a killed process leaves it behind, and the next run starts that file over under a new name.
    /// (0.36.x's `<etag>.incomplete` is kept: it resumes it with a Range request.)
    public static func withoutStalePartials(_ blobs: String, then argv: [String]) -> [String] {
        ["sh", "-c", #"find "$1" -maxdepth 1 -type f -name '*.????????.incomplete' -delete 2>/dev/null; shift; exec "$@""#, "sh", blobs] + argv
    }

    /// Whether rsync is on the source (else exit 5) and, over the node-to-node SSH `ssh`, on the target
    /// (else exit 7; any other failure: the source cannot log in to the target).
    public static func rsyncBothEnds(ssh: [String], target: String) -> RemoteCommand {
        .shell("command -v rsync >/dev/null || exit 5; \"$@\" 'command -v rsync >/dev/null || exit 7'", args: ssh + [target], timeout: .seconds(30))
    }

    /// `tar` of `name` under `dir` to stdout, partial downloads excluded.
    public static func pack(dir: String, name: String) -> RemoteCommand {
        .shell("tar -C \"$1\" -cf - --exclude='*.incomplete' \"$2\"", args: [dir, name], timeout: .seconds(6 * 3600))
    }

    /// `tar -x` from stdin into `dir` (created first).
    public static func unpack(into dir: String) -> RemoteCommand {
        .shell("mkdir -p -- \"$1\" && tar -C \"$1\" -xf -", args: [dir], timeout: .seconds(6 * 3600))
    }

    public static func makeDir(_ dir: String) -> RemoteCommand { RemoteCommand(["mkdir", "-p", "--", dir], timeout: .seconds(30)) }
    public static func remove(_ path: String) -> RemoteCommand { RemoteCommand(["rm", "-f", "--", path], timeout: .seconds(30)) }
}

/// A background job on a node: `BASE.pid`, `BASE.log` and, when it ends, `BASE.rc`.
public enum JobOps {
    /// A process that exists and is not a zombie (a node whose init does not reap would keep those forever).
    static let alive = #"alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }"#

    /// Starts `argv` in the background unless the same job still runs (then prints `attached`).
    public static func start(base: String, argv: [String]) -> RemoteCommand {
        let script = """
        \(alive)
        b=$1; shift
        if [ ! -f "$b.rc" ] && alive "$(cat "$b.pid" 2>/dev/null)"; then echo attached; exit 0; fi
        rm -f "$b.rc"; : > "$b.log"
        nohup sh -c '"$@"; echo $? > "$0.rc"' "$b" "$@" >> "$b.log" 2>&1 < /dev/null &
        echo $! > "$b.pid"
        """
        return .shell(script, args: [base] + argv, timeout: .seconds(30))
    }

    /// Waits on the node up to `wait` for the job to end, then prints its exit status, `running`, or `lost`.
    public static func state(base: String, wait: Duration) -> RemoteCommand {
        let script = """
        \(alive)
        b=$1; p="$(cat "$b.pid" 2>/dev/null)"; i=0
        while [ $i -lt "$2" ] && [ ! -f "$b.rc" ] && alive "$p"; do sleep 0.1; i=$((i+1)); done
        cat "$b.rc" 2>/dev/null && exit 0
        alive "$p" && echo running || { sleep 0.2; cat "$b.rc" 2>/dev/null || echo lost; }
        """
        return .shell(script, args: [base, String(max(1, Int(wait.seconds * 10)))], timeout: wait + .seconds(30))
    }

    public static func log(base: String) -> RemoteCommand { RemoteCommand(["tail", "-n", "40", "--", base + ".log"], timeout: .seconds(30)) }
}
