//! The trainer: optimizer, schedules, loop, checkpoints, metrics.
