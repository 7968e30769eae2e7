//! Progress reporting: an indicatif bar (loss, tokens/s, ETA) when stderr is a terminal, plain log
//! lines on stderr otherwise (CI logs, `nohup`, redirected output), nothing when quiet.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on a terminal, log lines otherwise.
    Auto,
    /// Always plain log lines.
    Lines,
    /// Nothing (tests).
    Quiet,
}

/// The run's progress display.
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    total: u64,
}

impl Progress {
    pub fn new(mode: ProgressMode, total_steps: u64, start_step: u64) -> Self {
        let terminal = std::io::stderr().is_terminal();
        match mode {
            ProgressMode::Auto if terminal => {
                let bar =
                    ProgressBar::with_draw_target(Some(total_steps), ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_position(start_step);
                bar.reset_eta();
                Self {
                    bar: Some(bar),
                    lines: false,
                    total: total_steps,
                }
            }
            ProgressMode::Auto | ProgressMode::Lines => Self {
                bar: None,
                lines: true,
                total: total_steps,
            },
            ProgressMode::Quiet => Self {
                bar: None,
                lines: false,
                total: total_steps,
            },
        }
    }

    /// Updates after a logged step.
    pub fn update(&self, step: u64, loss: f64, tokens_per_s: f64, eta_s: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step);
            bar.set_message(format!("loss {loss:.4}  {tokens_per_s:.0} tok/s"));
        } else if self.lines {
            eprintln!(
                "step {step}/{}  loss {loss:.4}  {tokens_per_s:.0} tok/s  eta {}",
                self.total,
                format_duration(eta_s)
            );
        }
    }

    /// A message that must not be drawn over by the bar.
    pub fn println(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.println(msg);
        } else if self.lines {
            eprintln!("{msg}");
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `1h02m03s`, `4m05s`, `6s`.
pub fn format_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    let s = secs.round() as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_format_compactly() {
        assert_eq!(super::format_duration(3723.0), "1h02m03s");
        assert_eq!(super::format_duration(245.0), "4m05s");
        assert_eq!(super::format_duration(6.2), "6s");
        assert_eq!(super::format_duration(f64::NAN), "?");
    }
}
