//! [`ObjectWriter`]: a blocking `Write` into one object, for the shard writers
//! (which run on blocking threads). Locally a buffered file; on object stores
//! the bytes are buffered up to one part (`UPLOAD_PART_BYTES`) and sent with a
//! single PUT when the object is small, else as a multipart upload with at most
//! `UPLOAD_CONCURRENCY` parts in flight (the writer waits for capacity, so memory
//! stays bounded). An upload that is dropped before [`ObjectWriter::finish`] is
//! aborted, so a failed task leaves no object behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::runtime::Handle;

use dsproc_common::config::{UPLOAD_CONCURRENCY, UPLOAD_PART_BYTES};

use crate::error::Error;
use crate::store::{Location, StoreError};

enum Target {
    /// Written under a temporary name beside `path`, renamed into place by `finish`:
    /// a shard is visible whole or not at all, as on object stores.
    Local {
        file: BufWriter<File>,
        path: PathBuf,
        tmp: PathBuf,
    },
    Remote {
        store: Arc<dyn ObjectStore>,
        path: Path,
        handle: Handle,
        buf: Vec<u8>,
        upload: Option<WriteMultipart>,
    },
}

/// A blocking writer of one object. Call [`Self::finish`] to make it visible.
pub struct ObjectWriter {
    target: Option<Target>,
    loc: Location,
}

impl ObjectWriter {
    /// Starts writing `loc` (creating parent directories locally). `handle` runs
    /// the uploads; the writer must be used from a blocking thread. The access
    /// policy is checked here (locally also on the created file and again before
    /// the rename into place; on object stores at every request).
    pub fn create(loc: &Location, handle: &Handle) -> Result<Self, Error> {
        use crate::policy::Access;
        let target = match &loc.local {
            Some(path) if loc.is_local() => {
                crate::policy::check_local(Access::Write, &loc.uri, path)?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
                }
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
                let file = File::create(&tmp).map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
                if let Err(e) = crate::policy::check_opened(Access::Write, &tmp.display().to_string(), &tmp, &file) {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
                Target::Local { file: BufWriter::with_capacity(1 << 20, file), path: path.clone(), tmp }
            }
            _ => {
                if loc.read_only() {
                    return Err(Error::Store(StoreError::Unsupported(format!(
                        "{}: {}:// is read-only",
                        loc.shown(),
                        loc.scheme()
                    ))));
                }
                loc.allow(Access::Write)?;
                Target::Remote {
                    store: loc.store()?,
                    path: loc.path(),
                    handle: handle.clone(),
                    buf: Vec::new(),
                    upload: None,
                }
            }
        };
        Ok(Self { target: Some(target), loc: loc.clone() })
    }

    /// Flushes everything and completes the object (fsync locally, the last
    /// part and the completion request on object stores).
    pub fn finish(mut self) -> Result<(), Error> {
        let loc = self.loc.clone();
        match self.target.take() {
            Some(Target::Local { file, path, tmp }) => {
                let done = file
                    .into_inner()
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e.into_error()))
                    .and_then(|f| f.sync_all().map_err(|e| Error::io(format!("writing {}", path.display()), e)))
                    .and_then(|_| crate::policy::check_local(crate::policy::Access::Write, &loc.uri, &path))
                    .and_then(|_| {
                        std::fs::rename(&tmp, &path)
                            .map_err(|e| Error::io(format!("cannot move {} into place", path.display()), e))
                    });
                if done.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                done
            }
            Some(Target::Remote { store, path, handle, buf, upload }) => match upload {
                None => handle
                    .block_on(store.put(&path, PutPayload::from(buf)))
                    .map(|_| ())
                    .map_err(|e| Error::Store(loc.error("PUT", &e))),
                Some(mut up) => {
                    let _rt = handle.enter();
                    up.put(Bytes::from(buf));
                    handle
                        .block_on(up.finish())
                        .map(|_| ())
                        .map_err(|e| Error::Store(loc.error("multipart upload", &e)))
                }
            },
            None => Ok(()),
        }
    }

    fn send_part(&mut self) -> std::io::Result<()> {
        let loc = self.loc.clone();
        let Some(Target::Remote { store, path, handle, buf, upload }) = self.target.as_mut() else { return Ok(()) };
        if upload.is_none() {
            let up = handle
                .block_on(store.put_multipart(path))
                .map_err(|e| std::io::Error::other(loc.error("starting a multipart upload", &e)))?;
            *upload = Some(WriteMultipart::new_with_chunk_size(up, UPLOAD_PART_BYTES));
        }
        let up = upload.as_mut().expect("started above");
        handle
            .block_on(up.wait_for_capacity(UPLOAD_CONCURRENCY))
            .map_err(|e| std::io::Error::other(loc.error("multipart upload", &e)))?;
        let _rt = handle.enter();
        up.put(Bytes::from(std::mem::take(buf)));
        Ok(())
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self.target.as_mut() {
            Some(Target::Local { file, .. }) => file.write(data),
            Some(Target::Remote { buf, .. }) => {
                buf.extend_from_slice(data);
                if buf.len() >= UPLOAD_PART_BYTES {
                    self.send_part()?;
                }
                Ok(data.len())
            }
            None => Err(std::io::Error::other("write after finish")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.target.as_mut() {
            Some(Target::Local { file, .. }) => file.flush(),
            _ => Ok(()),
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        match self.target.take() {
            Some(Target::Remote { handle, upload: Some(up), .. }) => {
                // Not finished: abort the upload so its parts are not kept.
                handle.spawn(async move {
                    let _ = up.abort().await;
                });
            }
            Some(Target::Local { tmp, .. }) => {
                let _ = std::fs::remove_file(tmp);
            }
            _ => {}
        }
    }
}

/// Writes a whole small object from a blocking thread.
pub fn put_blocking(loc: &Location, bytes: &[u8], handle: &Handle) -> Result<(), Error> {
    let mut w = ObjectWriter::create(loc, handle)?;
    w.write_all(bytes).map_err(|e| Error::io(format!("writing {}", loc.shown()), e))?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_local_files_and_removes_unfinished_ones() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::parse(&dir.path().join("a/b.bin").display().to_string(), None).unwrap();
        put_blocking(&loc, b"hello", rt.handle()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/b.bin")).unwrap(), b"hello");
        let loc2 = loc.join("../c.bin");
        let mut w = ObjectWriter::create(&Location::parse(&loc2.uri, None).unwrap(), rt.handle()).unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert!(!dir.path().join("a/c.bin").exists());
    }
}
