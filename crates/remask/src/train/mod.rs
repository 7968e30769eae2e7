//! The trainer: run config, optimizer, learning-rate schedule, loop, checkpoints, metrics, progress.
//!
//! Everything here is generic over [`crate::model::TrainModel`] and [`crate::BatchSource`];
//! `testing` (tests and the `testing` feature only) holds a small model and data source implementing
//! them for tests.

mod boxed;
pub mod checkpoint;
pub mod config;
pub mod metrics;
pub mod optimizer;
pub mod progress;
pub mod run_data;
pub mod schedule;
pub mod tensorboard;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trainer;

pub use checkpoint::{latest_complete, load as load_checkpoint, LoadedCheckpoint, TrainerState};
pub use config::RunConfig;
pub use optimizer::Optimizer;
pub use progress::ProgressMode;
pub use schedule::LrSchedule;
pub use trainer::{init_threads, on_pool, RunSummary, StepOutcome, Trainer, TrainerOptions};
