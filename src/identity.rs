//! The running user's identity, gathered once so the scrubber can remove it from reports:
//! user names (from the environment and the OS), full name, host names, home directory, and
//! the process environment (the scrubber removes the values of secret-looking variables).

/// Who is running this process, as far as the scrubber needs to know.
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity {
    pub(crate) users: Vec<String>,
    pub(crate) full_names: Vec<String>,
    pub(crate) hostnames: Vec<String>,
    pub(crate) home: Option<String>,
    pub(crate) env: Vec<(String, String)>,
}

impl Identity {
    /// Reads the identity of the current process. Costs a few system calls; call it off the
    /// caller's thread.
    pub(crate) fn current() -> Identity {
        let mut id = Identity::default();
        for var in ["USER", "USERNAME", "LOGNAME"] {
            if let Ok(v) = std::env::var(var) {
                push_unique(&mut id.users, v);
            }
        }
        if let Ok(v) = whoami::username() {
            push_unique(&mut id.users, v);
        }
        if let Ok(v) = whoami::realname() {
            push_unique(&mut id.full_names, v);
        }
        for var in ["HOSTNAME", "COMPUTERNAME"] {
            if let Ok(v) = std::env::var(var) {
                push_unique(&mut id.hostnames, v);
            }
        }
        if let Ok(v) = whoami::hostname() {
            push_unique(&mut id.hostnames, v);
        }
        if let Ok(v) = whoami::devicename() {
            push_unique(&mut id.hostnames, v);
        }
        id.home = dirs::home_dir().map(|h| h.to_string_lossy().into_owned());
        if let Some(home) = &id.home
            && let Some(last) = std::path::Path::new(home).file_name()
        {
            push_unique(&mut id.users, last.to_string_lossy().into_owned());
        }
        id.env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        id
    }

    /// A scrubber builder loaded with this identity.
    pub(crate) fn builder(&self) -> crate::scrub::ScrubberBuilder {
        let mut b = crate::scrub::Scrubber::builder();
        for u in &self.users {
            b = b.user(u.clone());
        }
        for n in &self.full_names {
            b = b.full_name(n.clone());
        }
        for h in &self.hostnames {
            b = b.hostname(h.clone());
        }
        if let Some(home) = &self.home {
            b = b.home_dir(home.clone());
        }
        b.env_vars(self.env.iter().cloned())
    }
}

fn push_unique(list: &mut Vec<String>, value: String) {
    let value = value.trim().to_owned();
    // "Unknown" is what some platforms answer when there is no real name.
    if !value.is_empty() && !value.eq_ignore_ascii_case("unknown") && !list.contains(&value) {
        list.push(value);
    }
}
