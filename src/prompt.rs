//! The first-run prompt of an opt-in app: [`ask`] shows what is collected and asks y/N, with
//! a timeout, and records the answer.

use crate::consent::{self, Decision};
use crate::diag;
use crate::settings::{ConsentSource, Settings};

/// Asks the user for consent, then, with review on, about the reports that wait; see
/// [`crate::ask`].
pub(crate) fn ask() -> Decision {
    let Some(rt) = crate::runtime::current() else {
        return Decision::off("disabled: consentry::init was not called");
    };
    let decision = ask_consent(&rt);
    if rt.review.load(std::sync::atomic::Ordering::Acquire)
        && may_review(&decision, rt.config.parsed_dsn().is_some())
        && consent::interactive()
    {
        review_waiting(&rt);
    }
    decision
}

fn ask_consent(rt: &std::sync::Arc<crate::runtime::Runtime>) -> Decision {
    let decision = rt.decision();
    if !decision.can_ask() {
        return decision;
    }
    let config = &rt.config;
    diag::eprint_line(&consent::disclosure(config));
    let question = format!(
        "Allow {} to send these reports? [y/N] (no answer in {} s counts as no) ",
        config.app_name,
        config.prompt_timeout.as_secs()
    );
    {
        use std::io::Write;
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "{question}");
        let _ = stderr.flush();
    }
    let answer = consent::read_line_timeout(config.prompt_timeout);
    let Some(answer) = answer else {
        diag::eprint_line("\nNo answer: nothing will be sent. You will be asked again in a day.");
        // Not asked again for a day: an unattended terminal must not wait at every run.
        if let Some(path) = rt.paths.settings_file()
            && let Ok(mut s) = Settings::load_from(&path)
        {
            let _ = s.modify(|d| d.prompt_unanswered_at = Some(crate::settings::now_rfc3339()));
            rt.remember_settings(s.data());
        }
        return decision;
    };
    let granted = consent::is_yes(&answer);
    let Some(path) = rt.paths.settings_file() else {
        return decision;
    };
    let recorded = Settings::load_from(&path).and_then(|mut s| {
        crate::control::record_answer(
            &mut s,
            granted,
            ConsentSource::Prompt,
            consent::notice_version(config).as_deref(),
        )?;
        Ok(s)
    });
    match recorded {
        Ok(settings) => {
            let new = consent::decide_for(config, rt.env(), Ok(settings.data()), false);
            rt.remember_settings(settings.data());
            let msg = if granted {
                format!(
                    "Thank you. Turn it off any time with '{} disable'.",
                    config.command()
                )
            } else {
                format!(
                    "Nothing will be sent. Change your mind with '{} enable'.",
                    config.command()
                )
            };
            diag::eprint_line(&msg);
            rt.apply(&new);
            new
        }
        Err(e) => {
            diag::warn_once("ask-record", || format!("cannot record your answer: {e}"));
            decision
        }
    }
}

/// Whether the review question may be asked: only while crash reports may be sent (the
/// user said yes and no rule says no; not in local mode) and there is a server to send to.
/// Otherwise the waiting reports are the user's business through `pending`/`send`.
fn may_review(decision: &Decision, has_server: bool) -> bool {
    decision.crash && decision.crash_mode == crate::settings::Mode::On && has_server
}

/// With review on, at an interactive start: what waits is shown and the user decides
/// (`y` sends, `n` discards, `v` shows them first; no answer keeps them for next time).
///
/// Only the reports waiting to be sent are offered: those kept on this machine (local mode,
/// or saved while reporting was off) are sent only by the user's own `send ID`.
pub(crate) fn review_waiting(rt: &crate::runtime::Runtime) {
    let waiting: Vec<_> = crate::review::waiting_reports(&rt.config)
        .into_iter()
        .filter(|w| !w.kept_locally)
        .collect();
    if waiting.is_empty() {
        return;
    }
    let config = &rt.config;
    let first_day = waiting
        .iter()
        .map(|w| w.captured_at.get(..10).unwrap_or("?"))
        .min()
        .unwrap_or("?")
        .to_owned();
    let destination = config.parsed_dsn().map_or_else(
        || "nowhere (no server configured)".to_owned(),
        |d| d.host().to_owned(),
    );
    loop {
        let question = format!(
            "{} crash report{} from {first_day} {} waiting to be sent to {destination}: send {}? [y/N/v=view] ",
            waiting.len(),
            if waiting.len() == 1 { "" } else { "s" },
            if waiting.len() == 1 { "is" } else { "are" },
            if waiting.len() == 1 { "it" } else { "them" },
        );
        {
            use std::io::Write;
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "{question}");
            let _ = stderr.flush();
        }
        let Some(answer) = consent::read_line_timeout(config.prompt_timeout) else {
            diag::eprint_line("\nNo answer: the reports wait for next time.");
            return;
        };
        let answer = answer.trim().to_ascii_lowercase();
        // A look is not a decision: `v` shows them (again) and asks again.
        if answer == "v" || answer == "view" {
            for w in &waiting {
                diag::eprint_line(&format!(
                    "# {} ({})\n{}",
                    w.id,
                    w.captured_at,
                    serde_json::to_string_pretty(&w.event).unwrap_or_default()
                ));
            }
            continue;
        }
        if consent::is_yes(&answer) {
            let mut sent = 0;
            for w in &waiting {
                match crate::review::send(config, w) {
                    Ok(()) => sent += 1,
                    Err(e) => diag::eprint_line(&format!("report {}: {e}", w.id)),
                }
            }
            diag::eprint_line(&format!("Sent {sent} report(s). Thank you."));
        } else {
            let n = crate::review::discard(config, &waiting);
            diag::eprint_line(&format!("Deleted {n} report(s) without sending them."));
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Mode;

    #[test]
    fn review_is_asked_only_while_reports_may_be_sent_to_a_server() {
        let mut yes = Decision::off("x");
        yes.crash = true;
        yes.crash_mode = Mode::On;
        assert!(may_review(&yes, true));
        assert!(!may_review(&yes, false), "no server: nothing to send to");
        let mut local = yes.clone();
        local.crash_mode = Mode::Local;
        assert!(
            !may_review(&local, true),
            "local mode: only the user's own send"
        );
        assert!(
            !may_review(&Decision::off("disabled by DO_NOT_TRACK=1"), true),
            "a no is not a question"
        );
    }
}
