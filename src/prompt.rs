//! The first-run prompt of an opt-in app: [`ask`] shows what is collected and asks y/N, with
//! a timeout, and records the answer.

use crate::consent::{self, Decision};
use crate::diag;
use crate::settings::{ConsentSource, Settings};

/// Asks the user for consent; see [`crate::ask`].
pub(crate) fn ask() -> Decision {
    let Some(rt) = crate::runtime::current() else {
        return Decision::off("disabled: consentry::init was not called");
    };
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
        diag::eprint_line("\nNo answer: nothing will be sent. You will be asked again next time.");
        return decision;
    };
    let granted = consent::is_yes(&answer);
    let Some(path) = rt.paths.settings_file() else {
        return decision;
    };
    let recorded = Settings::load_from(&path).and_then(|mut s| {
        crate::control::record_answer(&mut s, granted, ConsentSource::Prompt)?;
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
