//! The built-in processors, registered by name. A queue with no processor keeps its jobs
//! waiting.
//!
//! | name | does |
//! |---|---|
//! | `email` | sends a message over SMTP (or writes an `.eml` file) |
//! | `export` | writes records as CSV, JSON Lines or JSON to storage |
//! | `image-processing` | resizes, crops, rotates, filters and re-encodes an image |
//! | `model-processing` | validates, measures, packs, optimizes and simplifies glTF 2.0 models |
//!
//! Each reports progress (0, 10 once its input is read, up to 90 across its steps, 100 once
//! its output is written), fails at once on bad data and retries on transient errors. CPU
//! work runs on [`CpuPool`], never on an actor's thread.

pub mod common;
pub mod email;
mod export;
pub mod image;
pub mod model;

use std::sync::Arc;

use stagehand_core::Processor;

pub use common::{CpuPool, Resources};
pub use email::{EmailJob, EmailProcessor};
pub use export::{ExportFormat, ExportJob, ExportProcessor};
pub use image::{ImageJob, ImageProcessor};
pub use model::{ModelJob, ModelProcessor};

/// The names of the built-in processors.
pub const BUILTIN: [&str; 4] = ["email", "export", "image-processing", "model-processing"];

/// The built-in processor called `name`, if there is one; an error when its settings are
/// wrong.
pub fn builtin(name: &str, resources: &Resources) -> Result<Option<Arc<dyn Processor>>, String> {
    Ok(match name {
        "email" => Some(Arc::new(EmailProcessor::new(resources.clone())?)),
        "export" => Some(Arc::new(ExportProcessor::new(resources.clone()))),
        "image-processing" => Some(Arc::new(ImageProcessor::new(resources.clone()))),
        "model-processing" => Some(Arc::new(ModelProcessor::new(resources.clone()))),
        _ => None,
    })
}
