//! Checkpoint storage in a local directory: `chk-<id>/` holds a RocksDB checkpoint of the
//! store (SST files hard-linked, so a checkpoint costs only what changed), the caller's
//! metadata (source offsets, plan fingerprint), and last `MANIFEST.json`, which lists every
//! file with its size and CRC32C. A directory without a manifest is an unfinished checkpoint;
//! one whose files do not match it is damaged. Restore takes the newest checkpoint that
//! verifies, falling back past damaged ones with a warning.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io};
use crate::store::StateStore;

const MANIFEST: &str = "MANIFEST.json";
const METADATA: &str = "metadata.bin";
const FORMAT_VERSION: u32 = 1;

/// What a complete checkpoint holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// On-disk format version.
    pub version: u32,
    /// Checkpoint id (increasing).
    pub id: u64,
    /// Every file of the checkpoint but the manifest.
    pub files: Vec<FileEntry>,
}

/// One file of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Name within the checkpoint directory.
    pub name: String,
    /// Length in bytes.
    pub size: u64,
    /// CRC32C of the contents.
    pub crc32c: u32,
}

impl Manifest {
    /// Total bytes of the checkpoint's files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The checkpoints of one operator subtask, under one directory.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    root: PathBuf,
    retain: usize,
    /// `chk-` for checkpoints, `sp-` for savepoints.
    prefix: &'static str,
}

fn crc_of(path: &Path) -> Result<(u64, u32)> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut crc = 0u32;
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            return Ok((size, crc));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        size += n as u64;
    }
}

/// Every file under `dir` (recursively), synced, with its name relative to `base`.
fn collect_files(base: &Path, dir: &Path, out: &mut Vec<FileEntry>) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(io(&path))?.is_dir() {
            collect_files(base, &path, out)?;
            sync_dir(&path)?;
            continue;
        }
        // Hard-linked SSTs are already durable; the rest was just written.
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io(&path))?;
        let (size, crc32c) = crc_of(&path)?;
        let name = path
            .strip_prefix(base)
            .map_err(|_| Error::Corrupt {
                path: path.clone(),
                reason: "outside its checkpoint".into(),
            })?
            .to_string_lossy()
            .into_owned();
        out.push(FileEntry { name, size, crc32c });
    }
    Ok(())
}

fn copy_into(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    fs::copy(from, to).map_err(io(to))?;
    Ok(())
}

fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    copy_into(from, to)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

impl Checkpoints {
    /// Checkpoints under `root`, keeping the newest `retain` (at least one).
    pub fn new(root: impl Into<PathBuf>, retain: usize) -> Self {
        Checkpoints {
            root: root.into(),
            retain: retain.max(1),
            prefix: "chk-",
        }
    }

    /// Savepoints under `root` (`sp-<id>`): taken on request, never deleted by retention.
    pub fn savepoints(root: impl Into<PathBuf>) -> Self {
        Checkpoints {
            root: root.into(),
            retain: usize::MAX,
            prefix: "sp-",
        }
    }

    /// The checkpoint or savepoint directory `path` (`.../chk-<id>` or `.../sp-<id>`), as the
    /// storage it belongs to and its id.
    pub fn at(path: &Path) -> Result<(Self, u64)> {
        let bad = |reason: &str| Error::Corrupt {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| bad("not a checkpoint directory"))?;
        let root = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let (prefix, id) = if let Some(id) = name.strip_prefix("sp-") {
            ("sp-", id)
        } else if let Some(id) = name.strip_prefix("chk-") {
            ("chk-", id)
        } else {
            return Err(bad("the directory name must be chk-<id> or sp-<id>"));
        };
        let id = id
            .parse::<u64>()
            .map_err(|_| bad("the directory name must be chk-<id> or sp-<id>"))?;
        Ok((
            Checkpoints {
                root,
                retain: usize::MAX,
                prefix,
            },
            id,
        ))
    }

    /// The directory of checkpoint `id`.
    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("{}{id:020}", self.prefix))
    }

    /// Takes checkpoint `id` of `store` with `metadata`, durably: everything is written and
    /// synced under a temporary name, then renamed into place. Older checkpoints beyond the
    /// retained number are deleted afterwards.
    pub fn take(&self, id: u64, store: &StateStore, metadata: &[u8]) -> Result<Manifest> {
        let tmp = self.fresh_tmp(id)?;
        fs::remove_dir(&tmp).map_err(io(&tmp))?;
        store.checkpoint_into(&tmp)?;
        self.finish(id, metadata)
    }

    fn tmp(&self, id: u64) -> PathBuf {
        self.root.join(format!("tmp-{}{id:020}", self.prefix))
    }

    /// Deletes the staging directories of checkpoints that never finished: what a killed
    /// process left. Staging is per attempt, so a restart that takes the same id again must not
    /// find the old attempt's stores or manifest there (they would be sealed into its
    /// checkpoint). Call before the first checkpoint of a run.
    pub fn discard_unfinished(&self) -> Result<()> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&self.root)(e)),
        };
        let staged = format!("tmp-{}", self.prefix);
        for entry in entries {
            let entry = entry.map_err(io(&self.root))?;
            if entry.file_name().to_string_lossy().starts_with(&staged) {
                let path = entry.path();
                tracing::info!(dir = %path.display(), "deleting an unfinished checkpoint");
                fs::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }

    /// An empty staging directory for checkpoint `id`.
    fn fresh_tmp(&self, id: u64) -> Result<PathBuf> {
        let tmp = self.tmp(id);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        Ok(tmp)
    }

    /// Stages one store of checkpoint `id` under `name` (a store per operator subtask): a
    /// RocksDB checkpoint, SST files hard-linked. The first store staged starts the checkpoint.
    pub fn stage(&self, id: u64, name: &str, store: &StateStore) -> Result<()> {
        let tmp = self.tmp(id);
        if !tmp.exists() {
            fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        }
        let into = tmp.join(name);
        if into.exists() {
            fs::remove_dir_all(&into).map_err(io(&into))?;
        }
        store.checkpoint_into(&into)
    }

    /// Finishes checkpoint `id` from what was staged: writes `metadata`, syncs every file, writes
    /// the manifest last, renames the checkpoint into place and prunes old ones.
    pub fn finish(&self, id: u64, metadata: &[u8]) -> Result<Manifest> {
        let tmp = self.tmp(id);
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        write_synced(&tmp.join(METADATA), metadata)?;
        // A manifest here is from an attempt that died before its rename; it is rewritten below.
        let stale = tmp.join(MANIFEST);
        if stale.exists() {
            fs::remove_file(&stale).map_err(io(&stale))?;
        }
        let mut files = Vec::new();
        collect_files(&tmp, &tmp, &mut files)?;
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let manifest = Manifest {
            version: FORMAT_VERSION,
            id,
            files,
        };
        self.seal(id, &tmp, &manifest)?;
        Ok(manifest)
    }

    /// Writes `manifest` into `tmp` and renames it into place as checkpoint `id`.
    fn seal(&self, id: u64, tmp: &Path, manifest: &Manifest) -> Result<()> {
        let text = serde_json::to_vec_pretty(manifest).map_err(|e| Error::Corrupt {
            path: tmp.to_path_buf(),
            reason: format!("manifest: {e}"),
        })?;
        write_synced(&tmp.join(MANIFEST), &text)?;
        sync_dir(tmp)?;
        let dir = self.dir(id);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        fs::rename(tmp, &dir).map_err(io(&dir))?;
        sync_dir(&self.root)?;
        self.prune()
    }

    /// Copies checkpoint `manifest.id` of `from` here (a savepoint of a checkpoint): files are
    /// hard-linked when possible, copied otherwise.
    pub fn import(&self, from: &Checkpoints, manifest: &Manifest) -> Result<()> {
        let tmp = self.fresh_tmp(manifest.id)?;
        let src = from.dir(manifest.id);
        for f in &manifest.files {
            link_or_copy(&src.join(&f.name), &tmp.join(&f.name))?;
        }
        self.seal(manifest.id, &tmp, manifest)
    }

    /// Ids of the checkpoints that finished (have a manifest), oldest first.
    pub fn list(&self) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(io(&self.root)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_prefix(self.prefix)
                .and_then(|n| n.parse::<u64>().ok())
                && entry.path().join(MANIFEST).exists()
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn prune(&self) -> Result<()> {
        let ids = self.list()?;
        let keep_from = ids.len().saturating_sub(self.retain);
        for id in &ids[..keep_from] {
            let dir = self.dir(*id);
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(())
    }

    /// Checks checkpoint `id` against its manifest; returns the manifest if every file is
    /// there with its size and CRC.
    pub fn verify(&self, id: u64) -> Result<Manifest> {
        let dir = self.dir(id);
        let corrupt = |reason: String| Error::Corrupt {
            path: dir.clone(),
            reason,
        };
        let text = fs::read(dir.join(MANIFEST)).map_err(|e| corrupt(format!("manifest: {e}")))?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| corrupt(format!("manifest: {e}")))?;
        if manifest.version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                manifest.version
            )));
        }
        if manifest.id != id {
            return Err(corrupt(format!("manifest says checkpoint {}", manifest.id)));
        }
        for f in &manifest.files {
            let path = dir.join(&f.name);
            let (size, crc) = crc_of(&path).map_err(|e| corrupt(e.to_string()))?;
            if size != f.size || crc != f.crc32c {
                return Err(corrupt(format!(
                    "{} has {size} bytes with CRC {crc:08x}, the manifest says {} bytes with {:08x}",
                    f.name, f.size, f.crc32c
                )));
            }
        }
        Ok(manifest)
    }

    /// The newest checkpoint that verifies; damaged ones are skipped with a warning.
    pub fn latest(&self) -> Result<Option<Manifest>> {
        for id in self.list()?.into_iter().rev() {
            match self.verify(id) {
                Ok(m) => return Ok(Some(m)),
                Err(e) => tracing::warn!("skipping checkpoint {id}: {e}"),
            }
        }
        Ok(None)
    }

    /// The metadata stored with checkpoint `id`.
    pub fn metadata(&self, id: u64) -> Result<Vec<u8>> {
        let path = self.dir(id).join(METADATA);
        fs::read(&path).map_err(io(&path))
    }

    /// Restores the newest usable checkpoint into `into` (replacing what is there) and opens
    /// it; its manifest says which one it was. Fails if none is usable.
    pub fn restore_latest(&self, into: &Path) -> Result<(StateStore, Manifest)> {
        let manifest = self
            .latest()?
            .ok_or_else(|| Error::NoCheckpoint(self.root.clone()))?;
        let store = self.restore(&manifest, into)?;
        Ok((store, manifest))
    }

    /// Restores checkpoint `manifest.id` into `into` and opens it. SST files are immutable and
    /// are hard-linked when possible; the files RocksDB rewrites are copied.
    pub fn restore(&self, manifest: &Manifest, into: &Path) -> Result<StateStore> {
        self.restore_files(manifest, into)?;
        StateStore::open(into)
    }

    /// Puts the files of checkpoint `manifest.id` (but its metadata) into `into`, replacing
    /// what is there: SST files hard-linked when possible, the files RocksDB rewrites copied.
    pub fn restore_files(&self, manifest: &Manifest, into: &Path) -> Result<()> {
        let dir = self.dir(manifest.id);
        if into.exists() {
            fs::remove_dir_all(into).map_err(io(into))?;
        }
        fs::create_dir_all(into).map_err(io(into))?;
        for f in &manifest.files {
            if f.name == METADATA {
                continue;
            }
            let (from, to) = (dir.join(&f.name), into.join(&f.name));
            if f.name.ends_with(".sst") {
                link_or_copy(&from, &to)?;
            } else {
                // Files RocksDB rewrites in place must not be shared with the checkpoint.
                copy_into(&from, &to)?;
            }
        }
        sync_dir(into)
    }
}
