//! The container image's entrypoint: runs marina as the unprivileged user `nonroot` (uid and
//! gid 65532) whenever the storage folder lets that user write, and as the container's root
//! otherwise, saying so in one line.
//!
//! Why: `podman run -v ./registry-data:/data` mounts a folder the user just made, owned by the
//! user (rootless podman: the container's root) or by root (rootful podman). A process started
//! as 65532 could not write there, and the README's commands would fail. Started as root, this
//! program looks at who may write the folder and steps down to 65532 when it can; it never
//! changes the ownership of the user's files. A container started as another user
//! (`--user`, Kubernetes `runAsUser`) runs marina as that user, untouched.
//!
//! It then replaces itself with marina (`exec`), so marina is the container's PID 1 and gets
//! SIGTERM from `podman stop` directly. Built by the Containerfile with `rustc` alone (no
//! crates); `rustc --test deploy/container/entrypoint.rs` runs the tests below.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The marina binary in the image.
const MARINA: &str = "/usr/local/bin/marina";
/// The unprivileged user (and group) of distroless images, `nonroot` in their /etc/passwd.
const NONROOT: u32 = 65532;
/// marina's own default storage folder, were the image's `STORAGE_PATH=/data` unset.
const DEFAULT_STORAGE: &str = "./registry-data";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut marina = Command::new(MARINA);
    marina.args(&args);
    if effective_uid() == Some(0) {
        match storage_folder(&args, |name| std::env::var(name).ok()) {
            Storage::None => drop_to_nonroot(&mut marina),
            Storage::Folder(folder) => match writable_ancestor(&folder) {
                Some(true) => drop_to_nonroot(&mut marina),
                found => eprintln!("{}", staying_root_note(&folder, found)),
            },
        }
    }
    let error = marina.exec();
    eprintln!("marina-entrypoint: cannot start {MARINA}: {error}");
    ExitCode::from(127)
}

fn drop_to_nonroot(marina: &mut Command) {
    // As root, std also clears the supplementary groups before switching.
    marina
        .uid(NONROOT)
        .gid(NONROOT)
        .env("HOME", "/home/nonroot");
}

fn staying_root_note(folder: &Path, writable: Option<bool>) -> String {
    let why = if writable.is_none() {
        "cannot be examined".to_owned()
    } else {
        let owner = std::fs::metadata(folder).map(|m| format!("{}:{}", m.uid(), m.gid()));
        format!(
            "is owned by {} and not writable by nonroot ({NONROOT}:{NONROOT})",
            owner.unwrap_or_else(|_| "another user".to_owned())
        )
    };
    format!(
        "marina-entrypoint: the storage folder {} {why}, so marina runs as this container's root \
         (with rootless podman: your own user). To run it as nonroot, give the folder to \
         {NONROOT}:{NONROOT} (rootful: chown; rootless: podman unshare chown).",
        folder.display()
    )
}

/// The effective uid of this process, from /proc (std has no getuid).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_effective_uid(&status)
}

fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// What marina will write to, as far as its flags and environment tell.
#[derive(Debug, PartialEq, Eq)]
enum Storage {
    /// Nothing local: the S3 driver, or a subcommand, `--help` or `--version`.
    None,
    /// The filesystem backend's folder.
    Folder(PathBuf),
}

/// The storage folder marina will open, from its flags (which win) and environment. A TOML
/// file (`--config`, `MARINA_CONFIG`) is not read: with one, the folder named by flags or
/// environment, else marina's default, is the one examined.
fn storage_folder(args: &[OsString], env: impl Fn(&str) -> Option<String>) -> Storage {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let first = args.first().map(String::as_str);
    if first == Some("bench")
        || args
            .iter()
            .any(|a| matches!(a.as_str(), "-h" | "--help" | "-V" | "--version"))
    {
        return Storage::None;
    }
    let setting = |flag: &str, variable: &str| {
        flag_value(&args, flag).or_else(|| env(variable).filter(|v| !v.is_empty()))
    };
    let driver = setting("--storage-driver", "STORAGE_DRIVER")
        .or_else(|| setting("--storage-type", "STORAGE_TYPE"));
    if driver.as_deref() == Some("s3") {
        return Storage::None;
    }
    let path = setting("--storage-path", "STORAGE_PATH").unwrap_or_else(|| DEFAULT_STORAGE.into());
    Storage::Folder(PathBuf::from(path))
}

/// The value of `--flag VALUE` or `--flag=VALUE`; the last one counts, as with clap.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let mut value = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == flag {
            value = rest.next().cloned();
        } else if let Some(v) = arg.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
            value = Some(v.to_owned());
        }
    }
    value
}

/// Whether nonroot may create files in `folder`, or, when it does not exist yet, in its
/// nearest existing ancestor (marina creates the missing folders). `None`: nothing examinable.
fn writable_ancestor(folder: &Path) -> Option<bool> {
    let absolute = std::path::absolute(folder).ok()?;
    let existing = absolute.ancestors().find(|p| p.exists())?;
    let meta = std::fs::metadata(existing).ok()?;
    Some(meta.is_dir() && writable_by(meta.mode(), meta.uid(), meta.gid(), NONROOT, NONROOT))
}

/// Whether a folder with this mode and owner lets user `uid` (whose only group is `gid`) create
/// entries in it: write and search permission for the class the user falls in.
fn writable_by(mode: u32, owner: u32, group: u32, uid: u32, gid: u32) -> bool {
    let bits = if owner == uid {
        mode >> 6
    } else if group == gid {
        mode >> 3
    } else {
        mode
    };
    bits & 0o3 == 0o3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn folder(path: &str) -> Storage {
        Storage::Folder(PathBuf::from(path))
    }

    #[test]
    fn storage_defaults_to_marinas_own_folder() {
        assert_eq!(storage_folder(&[], |_| None), folder(DEFAULT_STORAGE));
    }

    #[test]
    fn storage_path_flag_wins_over_environment() {
        let env = |n: &str| (n == "STORAGE_PATH").then(|| "/from-env".to_owned());
        assert_eq!(storage_folder(&[], env), folder("/from-env"));
        assert_eq!(
            storage_folder(&args(&["--storage-path", "/a"]), env),
            folder("/a")
        );
        assert_eq!(
            storage_folder(&args(&["--storage-path=/b"]), env),
            folder("/b")
        );
    }

    #[test]
    fn empty_environment_value_counts_as_unset() {
        let env = |n: &str| (n == "STORAGE_PATH").then(String::new);
        assert_eq!(storage_folder(&[], env), folder(DEFAULT_STORAGE));
    }

    #[test]
    fn s3_driver_has_no_folder() {
        let env = |n: &str| (n == "STORAGE_DRIVER").then(|| "s3".to_owned());
        assert_eq!(storage_folder(&[], env), Storage::None);
        let alias = |n: &str| (n == "STORAGE_TYPE").then(|| "s3".to_owned());
        assert_eq!(storage_folder(&[], alias), Storage::None);
        assert_eq!(
            storage_folder(&args(&["--storage-driver", "s3"]), |_| None),
            Storage::None
        );
        // The flag wins over the environment, as in marina.
        let driver_flag = args(&["--storage-driver=filesystem"]);
        assert_eq!(storage_folder(&driver_flag, env), folder(DEFAULT_STORAGE));
    }

    #[test]
    fn subcommands_help_and_version_touch_no_storage() {
        for list in [&["bench", "--help"][..], &["--version"], &["-h"]] {
            assert_eq!(
                storage_folder(&args(list), |_| None),
                Storage::None,
                "{list:?}"
            );
        }
    }

    #[test]
    fn last_flag_counts() {
        let list = ["--storage-path", "/a", "--storage-path=/b"].map(String::from);
        assert_eq!(flag_value(&list, "--storage-path").as_deref(), Some("/b"));
        // A longer flag sharing the prefix is not the same flag.
        let list = ["--storage-pathology=/x"].map(String::from);
        assert_eq!(flag_value(&list, "--storage-path"), None);
    }

    #[test]
    fn writable_by_owner_group_or_others() {
        assert!(writable_by(0o755, NONROOT, 0, NONROOT, NONROOT));
        assert!(!writable_by(0o755, 0, 0, NONROOT, NONROOT));
        assert!(!writable_by(0o555, NONROOT, NONROOT, NONROOT, NONROOT));
        assert!(writable_by(0o775, 0, NONROOT, NONROOT, NONROOT));
        assert!(writable_by(0o1777, 0, 0, NONROOT, NONROOT));
        // Write without search permission is not enough to create an entry.
        assert!(!writable_by(0o722, 0, 0, NONROOT, NONROOT));
        // The owner's bits decide for the owner, even when others may write.
        assert!(!writable_by(0o577, NONROOT, 0, NONROOT, NONROOT));
    }

    #[test]
    fn effective_uid_is_the_second_number() {
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t5\t5\t5\t5\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Name:\tx\n"), None);
    }

    #[test]
    fn a_missing_folder_is_judged_by_its_nearest_existing_ancestor() {
        let base = std::env::temp_dir().join(format!("entrypoint-test-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let missing = base.join("a/b/c");
        let expected = {
            let m = std::fs::metadata(&base).unwrap();
            writable_by(m.mode(), m.uid(), m.gid(), NONROOT, NONROOT)
        };
        assert_eq!(writable_ancestor(&missing), Some(expected));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
