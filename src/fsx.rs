//! Files in consentry's own directories, opened so that nothing found there can hang the
//! host, redirect a write elsewhere, or make a read unbounded.
//!
//! - Only regular files are read or written: a FIFO, a socket or a device at one of our
//!   paths is an error, found without blocking (`O_NONBLOCK` on open, then the type is
//!   checked on the open file).
//! - Links are not followed inside our directories: files are opened with `O_NOFOLLOW`,
//!   an atomic write refuses to replace a link, and directory listings skip links.
//! - Reads are capped in bytes: a file larger than the cap is an error, never read whole.
//! - Directories consentry creates are `0700`; an existing one that others can write to is
//!   reported once.
//!
//! Every function here is the one way the rest of the crate touches the file system.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The largest settings or state file read (1 MiB); larger is treated as corrupt.
pub(crate) const SMALL_FILE_MAX: u64 = 1 << 20;

fn not_regular(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {what}, not a regular file; consentry only uses regular files in its directories",
            path.display()
        ),
    )
}

fn link_error(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a symbolic link; consentry does not follow links inside its own directories (replace it with a regular file)",
            path.display()
        ),
    )
}

/// What a path is, without following a link.
fn kind_name(meta: &fs::Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_symlink() {
        return "a symbolic link";
    }
    if ft.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_block_device() || ft.is_char_device() {
            return "a device";
        }
    }
    "not a regular file"
}

/// Opens `path` with `options`, never following a final link and never blocking on a FIFO,
/// then checks that what was opened is a regular file.
fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    }
    #[cfg(not(unix))]
    if let Ok(meta) = fs::symlink_metadata(path)
        && meta.file_type().is_symlink()
    {
        return Err(link_error(path));
    }
    let file = match options.open(path) {
        Ok(f) => f,
        // ELOOP: the final component is a link (O_NOFOLLOW).
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(link_error(path)),
        // ENXIO: a FIFO opened for writing with no reader (O_NONBLOCK).
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(not_regular(path, "a FIFO or socket"));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(path, kind_name(&meta)));
    }
    Ok(file)
}

/// Reads a regular file of at most `max` bytes. A larger file is an error
/// ([`io::ErrorKind::FileTooLarge`]), read no further than `max + 1` bytes.
pub(crate) fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path, OpenOptions::new().read(true))?;
    let len = file.metadata()?.len();
    if len > max {
        return Err(too_large(path, max));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(path, max));
    }
    Ok(bytes)
}

fn too_large(path: &Path, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("{} is larger than {max} bytes", path.display()),
    )
}

/// Appends `bytes` to a regular file, creating it (mode 0600) if needed. Never through a
/// link, never to a FIFO.
pub(crate) fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    private_mode(&mut options);
    let mut file = open_regular(path, &mut options)?;
    file.write_all(bytes)
}

/// Opens (creating, mode 0600) a regular file for locking: the settings lock.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    private_mode(&mut options);
    open_regular(path, &mut options)
}

fn private_mode(options: &mut OpenOptions) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = options;
}

/// The file's size, if `path` is a regular file (not through a link).
pub(crate) fn regular_len(path: &Path) -> Option<u64> {
    let meta = fs::symlink_metadata(path).ok()?;
    meta.is_file().then_some(meta.len())
}

/// Refuses a path that exists and is not a regular file (a link, a FIFO, a directory).
fn check_replaceable(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(link_error(path)),
        Ok(meta) if !meta.is_file() => Err(not_regular(path, kind_name(&meta))),
        _ => Ok(()),
    }
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory (mode 0600,
/// created exclusively), fsync, rename over `path`, fsync of the directory. Refuses to
/// replace a link or anything but a regular file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    check_replaceable(path)?;
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Overwrites a regular file in place (no temp file, so no new blocks beyond the file's
/// own): the last resort when the disk is too full for [`write_atomically`].
pub(crate) fn overwrite_in_place(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).truncate(true);
    let mut file = open_regular(path, &mut options)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Empties a regular file (which needs no free space): what is left when nothing at all
/// can be written.
pub(crate) fn truncate(path: &Path) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).truncate(true);
    open_regular(path, &mut options).map(drop)
}

/// The directory holding `path`.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
}

/// fsyncs a directory so a rename in it survives a crash. Best effort.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Creates `dir` and its missing parents, readable by the user only (0700). An existing
/// directory that group or others may write to is reported once (anyone who can write
/// there could plant links or read what is waiting to be sent).
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    if let Ok(meta) = fs::metadata(dir) {
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} exists and is not a directory", dir.display()),
            ));
        }
        warn_if_shared(dir, &meta);
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    // The umask may have widened nothing, but a mode set by DirBuilder is masked by it:
    // make the directory we created exactly 0700.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

#[cfg(unix)]
fn warn_if_shared(dir: &Path, meta: &fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    // Sticky, world-writable directories such as /tmp are the user's choice of base, not
    // ours; they are still reported, since others can plant files there.
    if mode & 0o022 != 0 {
        crate::diag::warn_once(&format!("shared-dir-{}", dir.display()), || {
            format!(
                "{} can be written by other users (mode {:o}); consentry refuses links there, but consider 'chmod 700' on it",
                dir.display(),
                mode & 0o7777
            )
        });
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_dir: &Path, _meta: &fs::Metadata) {}

/// A subdirectory of ours (the outbox): created private, and refused if it is a link, so
/// a listing or a deletion never reaches into another directory.
pub(crate) fn own_subdir(dir: &Path) -> io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(dir)
        && meta.file_type().is_symlink()
    {
        return Err(link_error(dir));
    }
    create_private_dir(dir)
}

/// The regular files directly in `dir` (links, FIFOs and directories skipped), with their
/// sizes, unsorted. Empty when `dir` is missing or is itself a link.
pub(crate) fn regular_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        _ => return Vec::new(),
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            // `DirEntry::metadata` does not follow links.
            let meta = e.metadata().ok()?;
            meta.is_file().then(|| (e.path(), meta.len()))
        })
        .collect()
}

/// Removes a file (a link itself, never its target). Already gone is fine.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// A stamp that changes whenever the file is replaced or rewritten: device, inode, length
/// and modification time. Atomic writes give a new inode, so even a change within the
/// file system's time resolution is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    ino: u64,
    dev: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

/// The file's [`Stamp`], not through a link. `None` when it does not exist.
pub(crate) fn stamp(path: &Path) -> Option<Stamp> {
    let meta = fs::symlink_metadata(path).ok()?;
    #[cfg(unix)]
    let (ino, dev) = {
        use std::os::unix::fs::MetadataExt;
        (meta.ino(), meta.dev())
    };
    #[cfg(not(unix))]
    let (ino, dev) = (0, 0);
    Some(Stamp {
        ino,
        dev,
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[cfg(unix)]
    #[test]
    fn fifos_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("settings.json");
        mkfifo(&fifo);
        let e = read_capped(&fifo, 100).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = append(&fifo, b"x").unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        assert!(write_atomically(&fifo, b"x").is_err());
        assert!(open_lock_file(&fifo).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("sent.jsonl");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = append(&link, b"leak").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(read_capped(&link, 100).is_err());
        assert!(write_atomically(&link, b"x").is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        // A dangling link is not created through either.
        let dangling = dir.path().join("settings.json.lock");
        std::os::unix::fs::symlink(dir.path().join("created"), &dangling).unwrap();
        assert!(open_lock_file(&dangling).is_err());
        assert!(!dir.path().join("created").exists());
        // A linked subdirectory is refused and not listed.
        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join("a.envelope"), b"theirs").unwrap();
        let outbox = dir.path().join("outbox");
        std::os::unix::fs::symlink(other.path(), &outbox).unwrap();
        assert!(own_subdir(&outbox).is_err());
        assert!(regular_files(&outbox).is_empty());
    }

    #[test]
    fn reads_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::write(&path, vec![b'x'; 2000]).unwrap();
        assert_eq!(
            read_capped(&path, 1000).unwrap_err().kind(),
            io::ErrorKind::FileTooLarge
        );
        assert_eq!(read_capped(&path, 2000).unwrap().len(), 2000);
    }

    #[cfg(unix)]
    #[test]
    fn created_dirs_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_private_dir(&sub).unwrap();
        let mode = fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn stamps_change_on_atomic_rewrite_of_equal_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        write_atomically(&path, b"{\"sync\":true }").unwrap();
        let before = stamp(&path);
        write_atomically(&path, b"{\"sync\":false}").unwrap();
        assert_ne!(before, stamp(&path));
    }
}
