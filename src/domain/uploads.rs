//! Uploaded files (`POST /upload`): an allow-list of image and video types, checked by extension
//! and by content, random names, a size limit per file, nothing written outside the upload
//! folder, and nothing left behind when a request fails half-way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngCore;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::app::App;

use super::limits::Limits;
use super::{Actor, DomainError};
use crate::store;

/// Most files in one request (the H5 client picks one; WeChat allows nine pictures at once).
pub const MAX_FILES: usize = 9;

/// Bytes received between two charges to the user's upload allowance: a Redis round trip per
/// quarter MiB, and at most that much written past the allowance.
const BILLING_STEP: u64 = 256 * 1024;

/// Bytes kept from the start of a file to recognise its type.
const HEAD_LEN: usize = 4096;

pub const NO_FILE: &str = "请选择要上传的文件";
pub const BAD_TYPE: &str = "不支持的文件类型，只能上传图片或视频";
pub const BAD_CONTENT: &str = "文件内容与扩展名不符";

/// Where uploads are served from, under `/public/`.
pub const UPLOAD_URL_PREFIX: &str = "/public/upload/";

/// The extensions accepted and how their content is recognised.
fn content_matches(extension: &str, head: &[u8]) -> Option<bool> {
    use infer::{image, video};
    let iso_media = |b: &[u8]| video::is_mp4(b) || video::is_m4v(b) || video::is_mov(b);
    Some(match extension {
        "jpg" | "jpeg" => image::is_jpeg(head),
        "png" => image::is_png(head),
        "gif" => image::is_gif(head),
        "webp" => image::is_webp(head),
        "bmp" => image::is_bmp(head),
        // MP4, M4V and QuickTime share the ISO media container; phones label them loosely.
        "mp4" | "m4v" | "mov" => iso_media(head),
        "webm" => video::is_webm(head),
        _ => return None,
    })
}

/// The lower-cased extension of a client's file name, if it is one we accept. Only the
/// extension is ever used: the stored name is random, so `../` or odd characters go nowhere.
pub fn accepted_extension(client_name: &str) -> Result<String, DomainError> {
    let base = client_name.rsplit(['/', '\\']).next().unwrap_or_default();
    let extension = match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() || !ext.is_empty() => ext.to_ascii_lowercase(),
        _ => return Err(DomainError::rejected(BAD_TYPE)),
    };
    if content_matches(&extension, &[]).is_none() {
        return Err(DomainError::rejected(BAD_TYPE));
    }
    Ok(extension)
}

fn random_name() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// One stored file, as `POST /upload` answers it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    pub url: String,
}

/// The files of one request. Dropped before [`UploadBatch::commit`], it removes every file it
/// stored, so a request that fails on its third file leaves none of them.
pub struct UploadBatch {
    limits: Arc<Limits>,
    user_id: i32,
    /// Bytes received and not yet charged to the user's upload allowance.
    unbilled: u64,
    upload_dir: PathBuf,
    temp_dir: PathBuf,
    max_size: usize,
    stored: Vec<PathBuf>,
    urls: Vec<Uploaded>,
    committed: bool,
}

impl UploadBatch {
    /// The files `user_id` sends in one request.
    pub fn new(app: &App, user_id: i32) -> Self {
        UploadBatch {
            limits: app.limits.clone(),
            user_id,
            unbilled: 0,
            upload_dir: app.config.public_dir.join("upload"),
            // Beside the served folder, not in it: a half-written file is never served.
            temp_dir: app.config.public_dir.join("upload-tmp"),
            max_size: app.config.upload_max,
            stored: Vec::new(),
            urls: Vec::new(),
            committed: false,
        }
    }

    /// Starts the next file, named `client_name` by the client (only its extension is used).
    pub async fn begin(&mut self, client_name: &str) -> Result<PendingFile, DomainError> {
        if self.stored.len() >= MAX_FILES {
            return Err(DomainError::rejected(format!(
                "一次最多上传{MAX_FILES}个文件"
            )));
        }
        let extension = accepted_extension(client_name)?;
        for dir in [&self.upload_dir, &self.temp_dir] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io_error("creating the upload folder", dir, e))?;
        }
        let name = random_name();
        let temp_path = self.temp_dir.join(format!("{name}.part"));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .await
            .map_err(|e| io_error("creating", &temp_path, e))?;
        Ok(PendingFile {
            file: Some(file),
            final_path: self.upload_dir.join(format!("{name}.{extension}")),
            url: format!("{UPLOAD_URL_PREFIX}{name}.{extension}"),
            temp_path,
            extension,
            head: Vec::with_capacity(HEAD_LEN),
            size: 0,
            max_size: self.max_size,
            done: false,
        })
    }

    /// Appends a chunk to `pending`, charged to the user's upload allowance every
    /// [`BILLING_STEP`] bytes, before they are written: a user over the allowance is refused
    /// after at most that much more.
    pub async fn write(
        &mut self,
        pending: &mut PendingFile,
        chunk: &[u8],
    ) -> Result<(), DomainError> {
        self.unbilled = self.unbilled.saturating_add(chunk.len() as u64);
        if self.unbilled >= BILLING_STEP {
            self.bill().await?;
        }
        pending.write(chunk).await
    }

    async fn bill(&mut self) -> Result<(), DomainError> {
        let bytes = std::mem::take(&mut self.unbilled);
        if bytes > 0 {
            self.limits.take_upload(self.user_id, bytes).await?;
        }
        Ok(())
    }

    /// Checks a written file's content and moves it into the served folder.
    pub async fn finish(&mut self, mut pending: PendingFile) -> Result<(), DomainError> {
        self.bill().await?;
        if pending.size == 0 {
            return Err(DomainError::rejected(BAD_CONTENT));
        }
        if content_matches(&pending.extension, &pending.head) != Some(true) {
            return Err(DomainError::rejected(BAD_CONTENT));
        }
        if let Some(mut file) = pending.file.take() {
            file.flush()
                .await
                .map_err(|e| io_error("writing", &pending.temp_path, e))?;
        }
        tokio::fs::rename(&pending.temp_path, &pending.final_path)
            .await
            .map_err(|e| io_error("moving", &pending.temp_path, e))?;
        pending.done = true;
        self.stored.push(pending.final_path.clone());
        self.urls.push(Uploaded {
            url: pending.url.clone(),
        });
        Ok(())
    }

    /// Keeps the stored files and answers their URLs; refuses a request without any file.
    pub async fn commit(
        mut self,
        app: &App,
        uploader: &Actor,
    ) -> Result<Vec<Uploaded>, DomainError> {
        if self.urls.is_empty() {
            return Err(DomainError::rejected(NO_FILE));
        }
        // Who uploaded what, so that only the uploader can make a file their photo. Should
        // this fail, the batch is dropped and its files removed.
        let urls: Vec<String> = self.urls.iter().map(|u| u.url.clone()).collect();
        let mut conn = app.db.get().await?;
        store::uploads::record(&mut conn, uploader.user_id, &urls).await?;
        self.committed = true;
        Ok(std::mem::take(&mut self.urls))
    }
}

impl Drop for UploadBatch {
    fn drop(&mut self) {
        if !self.committed {
            for path in &self.stored {
                remove_quietly(path);
            }
        }
    }
}

/// A file being received. Dropped before [`UploadBatch::finish`], it removes its partial file.
pub struct PendingFile {
    file: Option<tokio::fs::File>,
    temp_path: PathBuf,
    final_path: PathBuf,
    url: String,
    extension: String,
    head: Vec<u8>,
    size: usize,
    max_size: usize,
    done: bool,
}

impl PendingFile {
    /// Appends a chunk; refused as soon as the file grows past the limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), DomainError> {
        self.size = self.size.saturating_add(chunk.len());
        if self.size > self.max_size {
            return Err(DomainError::rejected(format!(
                "文件不能超过{}",
                human_size(self.max_size)
            )));
        }
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| DomainError::Internal("upload written after it ended".into()))?;
        file.write_all(chunk)
            .await
            .map_err(|e| io_error("writing", &self.temp_path, e))
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.done {
            // Close before removing (Windows would refuse otherwise).
            drop(self.file.take());
            remove_quietly(&self.temp_path);
        }
    }
}

fn remove_quietly(path: &Path) {
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "cannot remove an abandoned upload");
    }
}

fn io_error(doing: &str, path: &Path, error: std::io::Error) -> DomainError {
    DomainError::Internal(format!("{doing} {}: {error}", path.display()))
}

fn human_size(bytes: usize) -> String {
    const MB: usize = 1024 * 1024;
    const KB: usize = 1024;
    if bytes >= MB && bytes.is_multiple_of(MB) {
        format!("{} MB", bytes / MB)
    } else if bytes >= KB && bytes.is_multiple_of(KB) {
        format!("{} KB", bytes / KB)
    } else {
        format!("{bytes} 字节")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_extension_of_the_client_name_counts() {
        assert_eq!(accepted_extension("a.PNG").unwrap(), "png");
        assert_eq!(accepted_extension("../../etc/x.jpg").unwrap(), "jpg");
        assert_eq!(accepted_extension("dir\\clip.mov").unwrap(), "mov");
        for refused in ["page.html", "x.svg", "noext", "png", "a.png/", "a.php.", ""] {
            assert!(accepted_extension(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn content_must_match_the_extension() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(content_matches("png", png), Some(true));
        assert_eq!(content_matches("mp4", png), Some(false));
        assert_eq!(content_matches("png", b"<html><script>"), Some(false));
        assert_eq!(content_matches("html", png), None);
    }
}
