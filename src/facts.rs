//! Facts about the running program that help fix bugs without identifying anyone: OS and
//! version, architecture, Rust version, how the app was installed, container or WSL, CI
//! vendor, executable name, session id. Sent as tags and contexts with crash reports and as
//! static metadata with usage pings.

use std::path::Path;

use serde::Serialize;
use uuid::Uuid;

/// The compiler that built consentry (and so, in practice, the app).
pub(crate) const RUST_VERSION: &str = env!("CONSENTRY_RUSTC_VERSION");

/// How the running executable was installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum InstallSource {
    /// `cargo install` (under `.cargo/bin`).
    CargoInstall,
    /// A system package manager (`/usr/bin`, Homebrew, Nix, ...).
    SystemPackage,
    /// Built from a source checkout (`target/debug` or `target/release`).
    GitCheckout,
    /// Anything else.
    Other,
}

impl InstallSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            InstallSource::CargoInstall => "cargo-install",
            InstallSource::SystemPackage => "system-package",
            InstallSource::GitCheckout => "git-checkout",
            InstallSource::Other => "other",
        }
    }

    /// Classifies an executable path. Only the class leaves the machine, never the path.
    pub(crate) fn from_exe(exe: &Path) -> InstallSource {
        let path = exe.to_string_lossy().replace('\\', "/");
        let has = |needle: &str| path.contains(needle);
        if has("/.cargo/bin/")
            || std::env::var_os("CARGO_HOME")
                .is_some_and(|home| exe.starts_with(Path::new(&home).join("bin")))
        {
            InstallSource::CargoInstall
        } else if has("/target/debug/")
            || has("/target/release/")
            || has("/target/x86_64")
            || has("/target/aarch64")
        {
            InstallSource::GitCheckout
        } else if path.starts_with("/usr/bin/")
            || path.starts_with("/usr/sbin/")
            || path.starts_with("/bin/")
            || path.starts_with("/usr/lib/")
            || path.starts_with("/usr/libexec/")
            || has("/Cellar/")
            || path.starts_with("/opt/homebrew/")
            || path.starts_with("/nix/store/")
            || path.starts_with("/snap/")
            || path.starts_with("/var/lib/flatpak/")
            || has("/scoop/apps/")
            || has("/WinGet/Packages/")
        {
            InstallSource::SystemPackage
        } else {
            InstallSource::Other
        }
    }
}

/// The facts, gathered once per process.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Facts {
    pub(crate) os_name: String,
    pub(crate) os_version: String,
    pub(crate) kernel_version: Option<String>,
    pub(crate) arch: &'static str,
    pub(crate) rust_version: &'static str,
    pub(crate) install_source: InstallSource,
    pub(crate) container: bool,
    pub(crate) wsl: bool,
    pub(crate) ci: Option<&'static str>,
    pub(crate) exe_name: Option<String>,
    pub(crate) session_id: Uuid,
}

impl Facts {
    /// Gathers the facts. Reads a few small files on Linux; call it off the hot path.
    pub(crate) fn gather(ci: Option<&'static str>, session_id: Uuid) -> Facts {
        let exe = std::env::current_exe().ok();
        let kernel_version = read_trimmed("/proc/sys/kernel/osrelease");
        Facts {
            os_name: whoami::platform().to_string(),
            os_version: whoami::distro().unwrap_or_else(|_| "unknown".to_owned()),
            wsl: std::env::var_os("WSL_DISTRO_NAME").is_some()
                || kernel_version
                    .as_deref()
                    .is_some_and(|k| k.to_ascii_lowercase().contains("microsoft")),
            kernel_version,
            arch: std::env::consts::ARCH,
            rust_version: RUST_VERSION,
            install_source: exe
                .as_deref()
                .map_or(InstallSource::Other, InstallSource::from_exe),
            container: in_container(),
            ci,
            exe_name: exe
                .as_deref()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned()),
            session_id,
        }
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Docker, Podman, Kubernetes and friends.
fn in_container() -> bool {
    if Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists() {
        return true;
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::var_os("container").is_some()
    {
        return true;
    }
    read_trimmed("/proc/1/cgroup").is_some_and(|cgroup| {
        ["docker", "kubepods", "containerd", "libpod", "lxc"]
            .iter()
            .any(|needle| cgroup.contains(needle))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_sources() {
        let cases = [
            ("/home/alice/.cargo/bin/myapp", InstallSource::CargoInstall),
            (
                "C:\\Users\\alice\\.cargo\\bin\\myapp.exe",
                InstallSource::CargoInstall,
            ),
            (
                "/home/alice/src/myapp/target/release/myapp",
                InstallSource::GitCheckout,
            ),
            (
                "/home/alice/src/myapp/target/debug/deps/myapp-123",
                InstallSource::GitCheckout,
            ),
            ("/usr/bin/myapp", InstallSource::SystemPackage),
            ("/opt/homebrew/bin/myapp", InstallSource::SystemPackage),
            (
                "/usr/local/Cellar/myapp/1.0/bin/myapp",
                InstallSource::SystemPackage,
            ),
            (
                "/nix/store/abc-myapp/bin/myapp",
                InstallSource::SystemPackage,
            ),
            ("/opt/myapp/myapp", InstallSource::Other),
        ];
        for (path, expected) in cases {
            assert_eq!(InstallSource::from_exe(Path::new(path)), expected, "{path}");
        }
    }

    #[test]
    fn gathered_facts_carry_no_path() {
        let facts = Facts::gather(None, Uuid::nil());
        assert_eq!(facts.rust_version, RUST_VERSION);
        assert!(RUST_VERSION.starts_with("1."), "{RUST_VERSION}");
        let exe = facts.exe_name.unwrap();
        assert!(!exe.contains('/') && !exe.contains('\\'), "{exe}");
    }
}
