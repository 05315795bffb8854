//! Usage events: names, typed property values, typed catalogs.

use std::fmt;

/// The longest event name or property key (Google Analytics' limit).
///
/// ```
/// assert!(consentry_api::valid_name(&"a".repeat(consentry_api::MAX_NAME_LEN)));
/// ```
pub const MAX_NAME_LEN: usize = 40;
/// The most properties one event carries; the ones past it (and any with an invalid key)
/// are dropped, the event is kept.
///
/// ```
/// assert_eq!(consentry_api::MAX_PROPS, 16);
/// ```
pub const MAX_PROPS: usize = 16;
/// The longest string property value sent, in characters (longer ones are cut).
///
/// ```
/// assert_eq!(consentry_api::MAX_VALUE_LEN, 100);
/// ```
pub const MAX_VALUE_LEN: usize = 100;

/// The value of a usage property.
///
/// Numbers and booleans pass as they are; free strings pass through the scrubbing engine;
/// [`Prop::choice`] reports values outside an allow-list as `custom`; [`Prop::hashed`]
/// sends a salted hash so equal values group without being revealed.
///
/// ```
/// use consentry_api::Prop;
/// let props: [(&str, Prop); 4] = [
///     ("task", "detect".into()),
///     ("epochs", 100.into()),
///     ("model", Prop::choice("yolov8n", &["yolov8n", "yolov8s"])),
///     ("project", Prop::hashed("acme-secret-project")),
/// ];
/// # let _ = props;
/// ```
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum Prop {
    /// A free string; scrubbed before it is sent and cut at [`MAX_VALUE_LEN`] characters.
    Str(String),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A value from an allow-list, or `custom`.
    Choice(String),
    /// A value sent only as a salted hash.
    Hashed(String),
}

impl fmt::Debug for Prop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prop::Str(s) => write!(f, "Str({s:?})"),
            Prop::Int(n) => write!(f, "Int({n})"),
            Prop::Float(x) => write!(f, "Float({x})"),
            Prop::Bool(b) => write!(f, "Bool({b})"),
            Prop::Choice(c) => write!(f, "Choice({c:?})"),
            // The raw value is what the user wanted hidden: never print it.
            Prop::Hashed(_) => f.write_str("Hashed(..)"),
        }
    }
}

impl Prop {
    /// `value` if it is in `allowed`, else `custom` (Ultralytics reports model names outside
    /// its own list this way).
    ///
    /// ```
    /// use consentry_api::Prop;
    /// assert_eq!(Prop::choice("yolov8n", &["yolov8n"]), Prop::Choice("yolov8n".into()));
    /// assert_eq!(Prop::choice("my-secret-model", &["yolov8n"]), Prop::Choice("custom".into()));
    /// ```
    pub fn choice(value: &str, allowed: &[&str]) -> Prop {
        if allowed.contains(&value) {
            Prop::Choice(value.to_owned())
        } else {
            Prop::Choice("custom".to_owned())
        }
    }

    /// A value sent as an HMAC-SHA256 of it under the per-install salt, truncated: equal
    /// values give equal hashes on this install, and the value itself never leaves.
    ///
    /// ```
    /// let p = consentry_api::Prop::hashed("my-project");
    /// assert_eq!(format!("{p:?}"), "Hashed(..)");
    /// ```
    pub fn hashed(value: impl Into<String>) -> Prop {
        Prop::Hashed(value.into())
    }
}

impl From<&str> for Prop {
    fn from(s: &str) -> Prop {
        Prop::Str(s.to_owned())
    }
}
impl From<String> for Prop {
    fn from(s: String) -> Prop {
        Prop::Str(s)
    }
}
impl From<bool> for Prop {
    fn from(b: bool) -> Prop {
        Prop::Bool(b)
    }
}
impl From<f64> for Prop {
    fn from(x: f64) -> Prop {
        Prop::Float(x)
    }
}
impl From<f32> for Prop {
    fn from(x: f32) -> Prop {
        Prop::Float(f64::from(x))
    }
}
macro_rules! int_prop {
    ($($t:ty),*) => {$(
        impl From<$t> for Prop {
            fn from(n: $t) -> Prop {
                Prop::Int(i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_prop!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

/// An event name or property key: 1 to 40 of `[a-z0-9_]`, starting with a letter.
///
/// `const`, so typed event catalogs are checked at compile time (see
/// [`event_catalog!`](crate::event_catalog)).
///
/// ```
/// assert!(consentry_api::valid_name("train_started"));
/// assert!(!consentry_api::valid_name("Train Started"));
/// ```
pub const fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME_LEN || !b[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_') {
            return false;
        }
        i += 1;
    }
    true
}

/// An event of a typed catalog: the name is fixed at compile time.
///
/// Implemented by [`event_catalog!`](crate::event_catalog); apps may implement it by hand.
///
/// ```
/// struct Exported;
/// impl consentry_api::UsageEvent for Exported {
///     fn name(&self) -> &'static str { "exported" }
/// }
/// consentry_api::track_event(Exported, [("format", "onnx")]);
/// ```
pub trait UsageEvent {
    /// The event's name on the wire.
    fn name(&self) -> &'static str;
}

/// Declares a typed catalog of usage events (as ZenML does), with names checked at compile
/// time: a bad name does not compile.
///
/// ```
/// consentry_api::event_catalog! {
///     /// What this app reports.
///     pub enum AppEvent {
///         /// A training run started.
///         TrainStarted = "train_started",
///         /// A model was exported.
///         Exported = "exported",
///     }
/// }
/// use consentry_api::UsageEvent;
/// assert_eq!(AppEvent::TrainStarted.name(), "train_started");
/// consentry_api::track_event(AppEvent::Exported, [("format", "onnx")]);
/// ```
///
/// ```compile_fail
/// consentry_api::event_catalog! {
///     pub enum Bad { Oops = "Not Valid" }
/// }
/// ```
#[macro_export]
macro_rules! event_catalog {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every event name of the catalog, for `consentry::Config::usage_events`.
            $vis const NAMES: &'static [&'static str] = &[$($wire),+];
        }

        impl $crate::UsageEvent for $name {
            fn name(&self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        const _: () = { $(assert!($crate::valid_name($wire), concat!("invalid usage event name: ", $wire));)+ };
    };
}
