//! What the Graph library has to tell the user but does not print: the device-code sign-in
//! prompt and the insecure-TLS warning. The library hands each [`Notice`] to the [`Notifier`]
//! in [`crate::graph::client::ClientOptions`]; the command layer decides where it goes. The
//! default notifier drops them.

use std::fmt;
use std::sync::Arc;

/// A message for the user from the Graph library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Device-code sign-in: the user must open `verification_uri` and enter `user_code`.
    /// `message` is the identity platform's own instruction (or one built from the two).
    DeviceCode {
        verification_uri: Option<String>,
        user_code: Option<String>,
        message: String,
    },
    /// `--insecure-skip-tls-verify` is on: TLS certificates are not verified.
    InsecureTls { message: String },
}

impl Notice {
    /// The text to show the user.
    pub fn message(&self) -> &str {
        match self {
            Notice::DeviceCode { message, .. } | Notice::InsecureTls { message } => message,
        }
    }
}

/// Where notices go: a callback the caller supplies, or nowhere (the default).
#[derive(Clone, Default)]
pub struct Notifier(Option<Arc<dyn Fn(Notice) + Send + Sync>>);

impl Notifier {
    /// Notices go to `f`.
    pub fn new(f: impl Fn(Notice) + Send + Sync + 'static) -> Self {
        Notifier(Some(Arc::new(f)))
    }

    /// Hands `notice` to the callback, if there is one.
    pub(crate) fn notify(&self, notice: Notice) {
        if let Some(f) = &self.0 {
            f(notice);
        }
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Notifier(callback)"
        } else {
            "Notifier(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn notices_reach_the_callback_and_the_default_drops_them() {
        Notifier::default().notify(Notice::InsecureTls {
            message: "dropped".into(),
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let n = Notifier::new(move |notice| sink.lock().unwrap().push(notice));
        n.clone().notify(Notice::InsecureTls {
            message: "w".into(),
        });
        assert_eq!(seen.lock().unwrap()[0].message(), "w");
        assert_eq!(format!("{n:?}"), "Notifier(callback)");
        assert_eq!(format!("{:?}", Notifier::default()), "Notifier(none)");
    }
}
