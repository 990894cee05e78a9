//! The built-in processors, registered by name. Until a queue's processor exists its jobs wait.

mod export;

use std::sync::Arc;

use stagehand_core::Processor;

pub use export::{ExportFormat, ExportJob, ExportProcessor};

use crate::storage::Storage;

/// The names of the built-in processors.
pub const BUILTIN: [&str; 1] = ["export"];

/// The built-in processor called `name`, if there is one.
pub fn builtin(name: &str, storage: &Storage) -> Option<Arc<dyn Processor>> {
    match name {
        "export" => Some(Arc::new(ExportProcessor::new(storage.clone()))),
        _ => None,
    }
}
