//! The two local files operator commands keep: an audit log (who replayed or purged
//! what, when, how many) and a replay journal (which dead letters were already sent back),
//! which makes an interrupted replay safe to run again.

use super::OpsError;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Paths of the audit log and the replay journal.
#[derive(Debug, Clone)]
pub struct OpsFiles {
    /// JSON lines, one per replay, purge or redrive.
    pub audit: PathBuf,
    /// JSON lines, one per dead letter sent back.
    pub journal: PathBuf,
}

impl OpsFiles {
    /// Both files in one folder (`.shop` by default).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            audit: dir.join("audit.jsonl"),
            journal: dir.join("replay-journal.jsonl"),
        }
    }
}

fn append(path: &Path, line: &impl Serialize) -> Result<(), OpsError> {
    let io = |source| OpsError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let mut text = serde_json::to_string(line).unwrap_or_default();
    text.push('\n');
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_data().map_err(io)
}

/// The operator as the machine knows them: `user@host`.
pub fn who() -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok())
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{host}")
}

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// RFC 3339 time.
    pub at: String,
    /// `user@host`.
    pub who: String,
    /// `dlq replay`, `dlq purge`, `saga redrive`, ...
    pub action: String,
    /// The queue or order acted on.
    pub subject: String,
    /// Where messages went, when they went somewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The `--filter`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Whether nothing was changed on purpose.
    pub dry_run: bool,
    /// Messages moved, purged or executions started.
    pub count: usize,
    /// Messages skipped by the filter.
    pub skipped: usize,
    /// Messages that failed, with reasons.
    pub failed: Vec<String>,
    /// Whether the run stopped before the queue was drained (Ctrl-C).
    pub interrupted: bool,
}

impl AuditRecord {
    /// A record stamped with now and the operator.
    pub fn new(action: &str, subject: &str) -> Self {
        Self {
            at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            who: who(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            destination: None,
            filter: None,
            dry_run: false,
            count: 0,
            skipped: 0,
            failed: Vec::new(),
            interrupted: false,
        }
    }

    /// Appends the record to the audit log.
    pub fn append(&self, files: &OpsFiles) -> Result<(), OpsError> {
        append(&files.audit, self)
    }
}

/// Reads the audit log back, oldest first.
pub fn read_audit(files: &OpsFiles) -> Vec<AuditRecord> {
    std::fs::read_to_string(&files.audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JournalLine {
    queue: String,
    message_id: String,
    destination: String,
    at: String,
}

/// Which dead letters were already sent back, by queue URL and message id. A dead
/// letter keeps its id until it is deleted, and a message that fails again reaches the
/// DLQ with a new id, so an entry never hides a message that still needs moving.
pub struct Journal {
    path: PathBuf,
    sent: HashSet<(String, String)>,
}

impl Journal {
    /// Loads the journal (an absent file is an empty journal).
    pub fn open(files: &OpsFiles) -> Self {
        let sent = std::fs::read_to_string(&files.journal)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<JournalLine>(l).ok())
            .map(|l| (l.queue, l.message_id))
            .collect();
        Self {
            path: files.journal.clone(),
            sent,
        }
    }

    /// Whether this dead letter was already sent back.
    pub fn was_sent(&self, queue_url: &str, message_id: &str) -> bool {
        self.sent
            .contains(&(queue_url.to_owned(), message_id.to_owned()))
    }

    /// Records, durably, that the dead letter was sent back; call after the send is
    /// confirmed and before deleting it.
    pub fn record_sent(
        &mut self,
        queue_url: &str,
        message_id: &str,
        destination: &str,
    ) -> Result<(), OpsError> {
        append(
            &self.path,
            &JournalLine {
                queue: queue_url.to_owned(),
                message_id: message_id.to_owned(),
                destination: destination.to_owned(),
                at: time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            },
        )?;
        self.sent
            .insert((queue_url.to_owned(), message_id.to_owned()));
        Ok(())
    }
}
