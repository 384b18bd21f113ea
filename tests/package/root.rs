//! A throw-away Debian 12 root: debootstrap'd once from Debian's archive into a tarball under
//! target/ (about 250 MB, a minute), extracted afresh for each test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use tempfile::TempDir;

use crate::ok;

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// The package's dependencies (dpkg -i installs none), and what the systemd test boots
/// (systemd as init, dbus). The cache's name follows this list.
const INCLUDE: &str = "systemd,systemd-sysv,dbus,libnftnl11,libmnl0,procps,nftables,iproute2";

fn cache_name() -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (SUITE, INCLUDE).hash(&mut hasher);
    format!("{SUITE}-minbase-{:016x}.tar", hasher.finish())
}

/// One debootstrap at a time; the second test waits for the first's tarball.
static CACHE: Mutex<()> = Mutex::new(());

fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package-test");
    std::fs::create_dir_all(&dir).expect("create the package-test directory");
    dir
}

/// The cached tarball, made now if missing.
fn cache() -> PathBuf {
    let _one = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let tarball = work_dir().join(cache_name());
    if tarball.exists() {
        return tarball;
    }
    let build = TempDir::with_prefix_in("debootstrap-", work_dir()).expect("temp dir");
    eprintln!("package test: debootstrap {SUITE} from {MIRROR} (once; cached in {tarball:?})");
    ok(Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={INCLUDE}"), SUITE])
        .arg(build.path())
        .arg(MIRROR));
    let partial = tarball.with_extension("partial");
    ok(Command::new("tar")
        .arg("-C")
        .arg(build.path())
        .arg("-cf")
        .arg(&partial)
        .arg("."));
    std::fs::rename(&partial, &tarball).expect("rename the tarball");
    tarball
}

/// A fresh copy of the root, deleted on drop.
#[derive(Debug)]
pub struct Root {
    dir: TempDir,
}

impl Root {
    pub fn fresh() -> Root {
        let tarball = cache();
        let dir = TempDir::with_prefix_in("root-", work_dir()).expect("temp dir");
        ok(Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .arg("-xf")
            .arg(&tarball));
        Root { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the root (`path` absolute, as the guest sees it).
    pub fn join(&self, path: &str) -> PathBuf {
        self.path().join(path.trim_start_matches('/'))
    }

    pub fn copy_in(&self, from: &Path, to: &str) {
        std::fs::copy(from, self.join(to)).unwrap_or_else(|e| panic!("copy {from:?}: {e}"));
    }

    /// `program args` chrooted into the root, without network.
    pub fn chroot(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("unshare");
        command
            .args(["--net", "chroot"])
            .arg(self.path())
            .arg(program)
            .args(args)
            // Nothing of the test's environment: KNOCK_NFQ_* would be read as config keys.
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive");
        command
    }

    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    /// Whether `path` exists in the root (a dangling symlink counts).
    pub fn has(&self, path: &str) -> bool {
        self.join(path).symlink_metadata().is_ok()
    }

    /// The numeric id of `group` in the root's /etc/group.
    pub fn gid(&self, group: &str) -> u32 {
        self.read("/etc/group")
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields[0] == group).then(|| fields[2].parse().expect("a gid"))
            })
            .unwrap_or_else(|| panic!("no group {group} in the root's /etc/group"))
    }
}
